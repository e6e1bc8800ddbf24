"""End-to-end benchmark: upload-to-result time per study, stage by stage.

    .venv/bin/python bench/bench_pipeline.py [--repeat 3] [--studies DIR] [--port 8766]

Starts the embedded system (``lungcad serve --workers``: the API, the relay, one preprocess
and one inference worker, file broker, SQLite, local store) as a separate process; uploads each
shared study (``../shared/data/ct/*.zip``, when present) and a 300-slice synthetic chest CT
(512 x 512, 1.0 mm slices) through the API; polls until the job ends. Prints the median wall
time from the start of the upload to ``succeeded`` and the median of each stage's timing as the
workers recorded it. Target on the 2-core development machine: <= 20 s per study, median.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["preprocess_download", "preprocess_read", "preprocess_resample", "preprocess_segment",
          "preprocess_store", "inference_load", "inference_detect", "inference_measure",
          "inference_reports"]


def synthetic_zip(slices: int = 300) -> bytes:
    from lungcad import synthetic

    geometry = synthetic.default_geometry(shape=(slices, 512, 512), spacing=(1.0, 0.7, 0.7))
    case = synthetic.make_chest_ct(geometry=geometry, seed=11)
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory() as tmp:
        synthetic.write_dicom_series(case.hu, case.geometry, tmp)
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
            for path in sorted(Path(tmp).glob("*.dcm")):
                zf.write(path, f"SYNTH/{path.name}")
    return buffer.getvalue()


def start(data_dir: Path, port: int) -> tuple[subprocess.Popen[bytes], str]:
    env = {**os.environ, "LUNGCAD_ENV": "development", "LUNGCAD_DATA_DIR": str(data_dir),
           "LUNGCAD_MAX_UPLOAD_BYTES": str(4 * 1024**3)}
    cli = [sys.executable, "-m", "lungcad.cli"]
    subprocess.run([*cli, "migrate"], env=env, check=True, capture_output=True)  # noqa: S603
    key = subprocess.run([*cli, "admin", "create-key", "--tenant", "bench"], env=env,  # noqa: S603
                         check=True, capture_output=True, text=True).stdout.split()[-1]
    log = open(data_dir / "server.log", "wb")  # noqa: SIM115
    server = subprocess.Popen([*cli, "serve", "--port", str(port), "--workers"], env=env,  # noqa: S603
                              stdout=log, stderr=subprocess.STDOUT)
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return server, key
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.kill()
    raise RuntimeError("server did not start")


def run_one(client: httpx.Client, name: str, payload: bytes) -> dict:
    start = time.perf_counter()
    response = client.post("/v1/jobs", files=[("files", (name, payload, "application/zip"))])
    response.raise_for_status()
    job = response.json()
    while job["state"] not in ("succeeded", "failed", "canceled"):
        time.sleep(0.2)
        job = client.get(f"/v1/jobs/{job['id']}").json()
    job["wall_s"] = time.perf_counter() - start
    return job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--studies", type=Path, default=ROOT.parent / "shared" / "data" / "ct")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--no-synthetic", action="store_true")
    args = parser.parse_args()
    cases = [(p.stem, p.read_bytes()) for p in sorted(args.studies.glob("*.zip"))]
    if not args.no_synthetic:
        cases.append(("synthetic-512x512x300", synthetic_zip()))
    with tempfile.TemporaryDirectory(dir=ROOT) as tmp:
        server, key = start(Path(tmp), args.port)
        rows = []
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{args.port}", timeout=600,
                              headers={"Authorization": f"Bearer {key}"}) as client:
                run_one(client, "warmup.zip", cases[-1][1])  # loads the model once
                for name, payload in cases:
                    jobs = [run_one(client, f"{name}.zip", payload) for _ in range(args.repeat)]
                    failed = [j for j in jobs if j["state"] != "succeeded"]
                    if failed:
                        print(f"{name}: {failed[0]['state']} {failed[0].get('error_code')}: "
                              f"{failed[0].get('error_message')}")
                        continue
                    rows.append((name, statistics.median(j["wall_s"] for j in jobs),
                                 {s: statistics.median(j["timings_s"].get(s, 0) for j in jobs)
                                  for s in STAGES}, len(payload) / 1e6))
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"\nLungCAD pipeline benchmark ({platform.node()}, {os.cpu_count()} cores, embedded "
          f"configuration, one worker per queue, median of {args.repeat})")
    short = [s.replace("preprocess_", "pre:").replace("inference_", "inf:") for s in STAGES]
    print(f"{'study':<24}{'MB':>6}{'total s':>9}" + "".join(f"{s:>13}" for s in short))
    for name, wall, stages, size in rows:
        print(f"{name:<24}{size:>6.0f}{wall:>9.1f}" + "".join(f"{stages[s]:>13.2f}"
                                                           for s in STAGES))
    print("target: <= 20 s per study (median); total = upload start to succeeded")


if __name__ == "__main__":
    main()
