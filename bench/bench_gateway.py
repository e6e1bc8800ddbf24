"""Gateway benchmark: upload ingest throughput and status-poll latency.

    .venv/bin/python bench/bench_gateway.py [--size-mb 150] [--repeat 3] [--rate 200]
        [--seconds 10] [--database-url postgresql+psycopg2://postgres@127.0.0.1/test]

Starts ``lungcad serve --no-workers`` as a separate process (embedded configuration: local
object store on the same disk as the plain copy), then:

1. ingest: POSTs a zip of synthetic CT slices (``--size-mb``) from httpx and, where it is
   installed, curl, and times each against a plain ``shutil.copyfile`` of the same bytes on the
   same disk, in the same run; the gateway's Server-Timing header splits the httpx uploads
   into phases;
2. poll: drives GET /v1/jobs/{id} at a fixed open-loop rate from this process over loopback
   with ``bench/loadgen.py`` (keep-alive connections, latency counted from each request's
   scheduled time) and reports p50/p99 latency.

Two context lines bound what ingest can reach on the machine: SHA-256 on one core (the gateway
hashes each upload as it arrives) and the HTTP receive floor (curl to ``bench/asgi_sink.py``
under uvicorn, the body read and dropped).

Prints a table of medians. Target: ingest >= 50% of the plain-copy rate; p99 poll < 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from loadgen import run_load
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid


def make_zip(path: Path, size_mb: int) -> None:
    """A zip (stored, like most PACS exports of compressed-noise CT) of 512x512 CT slices."""
    rng = np.random.default_rng(0)
    study, series = generate_uid(), generate_uid()
    slices = max(2, size_mb * 1024 * 1024 // (512 * 512 * 2))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i in range(slices):
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
            meta.MediaStorageSOPInstanceUID = generate_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = FileDataset("x", {}, file_meta=meta, preamble=b"\0" * 128)
            ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, \
                meta.MediaStorageSOPInstanceUID
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
            ds.Modality, ds.PatientID = "CT", "BENCH"
            ds.ImagePositionPatient = [0, 0, float(i)]
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.PixelSpacing, ds.Rows, ds.Columns = [0.7, 0.7], 512, 512
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated = ds.BitsStored = 16
            ds.HighBit, ds.PixelRepresentation = 15, 1
            ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
            ds.PixelData = rng.integers(0, 2000, (512, 512), dtype=np.int16).tobytes()
            tmp = path.parent / "slice.dcm"
            ds.save_as(tmp, enforce_file_format=True)
            zf.write(tmp, f"BENCH/Series 1/{i:04d}.dcm")
            tmp.unlink()


def start_server(data_dir: Path, port: int, database_url: str | None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LUNGCAD_ENV": "development", "LUNGCAD_DATA_DIR": str(data_dir),
           "LUNGCAD_MAX_UPLOAD_BYTES": str(4 * 1024**3),
           "LUNGCAD_RATE_LIMIT_PER_S": "0"}  # measure the gateway, not the per-key limit
    if database_url:
        env["LUNGCAD_DATABASE_URL"] = database_url
    subprocess.run([sys.executable, "-m", "lungcad.cli", "migrate"], env=env, check=True,  # noqa: S603
                   capture_output=True)
    key = subprocess.run([sys.executable, "-m", "lungcad.cli", "admin", "create-key",  # noqa: S603
                          "--tenant", "bench"], env=env, check=True, capture_output=True,
                         text=True).stdout.strip().splitlines()[-1]
    env["BENCH_KEY"] = key
    process = subprocess.Popen([sys.executable, "-m", "lungcad.cli", "serve", "--port",  # noqa: S603
                                str(port), "--no-workers"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    process.key = key  # type: ignore[attr-defined]
    if wait_until_up(f"http://127.0.0.1:{port}/healthz"):
        return process
    process.kill()
    raise RuntimeError("server did not start")


def wait_until_up(url: str, tries: int = 300) -> bool:
    """Whether ``url`` answered a GET within ``tries`` tenths of a second."""
    for _ in range(tries):
        try:
            httpx.get(url, timeout=1)
            return True
        except httpx.HTTPError:
            time.sleep(0.1)
    return False


def upload_httpx(zip_path: Path, url: str, key: str) -> httpx.Response:
    with open(zip_path, "rb") as handle:
        return httpx.post(f"{url}/v1/jobs", headers={"Authorization": f"Bearer {key}"},
                          files=[("files", (zip_path.name, handle, "application/zip"))],
                          timeout=600)


def upload_curl(zip_path: Path, url: str, key: str) -> None:
    """The same upload from curl: a C client, as most PACS senders are, that leaves more of
    this machine's two cores to the gateway."""
    status = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",  # noqa: S603, S607
                             "-H", f"Authorization: Bearer {key}",
                             "-F", f"files=@{zip_path};type=application/zip", f"{url}/v1/jobs"],
                            capture_output=True, text=True, check=True, timeout=600).stdout
    if status != "202":
        raise RuntimeError(f"curl upload answered {status}")


def sha256_rate(zip_path: Path, repeat: int) -> float:
    """SHA-256 of the zip's bytes from memory on one core (MB/s, median): the gateway hashes
    every upload as it arrives, so this bounds the ingest rate on a CPU without SHA
    instructions."""
    data = zip_path.read_bytes()
    rates = []
    for _ in range(repeat):
        start = time.perf_counter()
        hashlib.sha256(data).hexdigest()
        rates.append(len(data) / (time.perf_counter() - start) / 1e6)
    return statistics.median(rates)


def receive_floor(zip_path: Path, port: int, repeat: int) -> float | None:
    """The same bytes POSTed by curl to ``bench/asgi_sink.py`` under uvicorn (MB/s, median):
    what receiving the body costs before any parsing, hashing or writing."""
    if not shutil.which("curl"):
        return None
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "asgi_sink:app", "--app-dir",  # noqa: S603
                               str(Path(__file__).parent), "--port", str(port),
                               "--log-level", "warning"])
    url = f"http://127.0.0.1:{port}/"
    size = zip_path.stat().st_size
    try:
        if not wait_until_up(url):
            raise RuntimeError("the receive-floor sink did not start")
        rates = []
        for _ in range(repeat):
            start = time.perf_counter()
            answer = subprocess.run(["curl", "-sS", "-X", "POST", "--data-binary",  # noqa: S603, S607
                                     f"@{zip_path}", "-H", "Content-Type: application/zip", url],
                                    capture_output=True, text=True, check=True, timeout=600)
            rates.append(size / (time.perf_counter() - start) / 1e6)
            if answer.stdout != str(size):
                raise RuntimeError(f"the sink read {answer.stdout} bytes")
        return statistics.median(rates)
    finally:
        server.terminate()
        server.wait(timeout=30)


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_phases(response: httpx.Response) -> dict[str, float]:
    header = response.headers.get("server-timing", "")
    return {name: float(ms) for name, ms in
            (item.split(";dur=") for item in header.split(", ") if ";dur=" in item)}


def bench_ingest(zip_path: Path, data_dir: Path, url: str, key: str, repeat: int,
                 clients: dict[str, Any]) -> tuple[list[float], dict[str, list[float]],
                                                   dict[str, list[float]], str]:
    size = zip_path.stat().st_size
    data_dir.mkdir(parents=True, exist_ok=True)
    copies: list[float] = []
    uploads: dict[str, list[float]] = {name: [] for name in clients}
    phases: dict[str, list[float]] = {}
    job_id = ""
    for i in range(repeat):
        target = data_dir / f"copy-{i}.zip"
        start = time.perf_counter()
        shutil.copyfile(zip_path, target)
        with open(target, "rb+") as handle:
            os.fsync(handle.fileno())
        copies.append(size / (time.perf_counter() - start) / 1e6)
        target.unlink()
        for name, upload in clients.items():
            start = time.perf_counter()
            response = upload(zip_path, url, key)
            elapsed = time.perf_counter() - start
            if response is not None:  # httpx: the job and the server's phases
                response.raise_for_status()
                job_id = response.json()["id"]
                for phase, ms in server_phases(response).items():
                    phases.setdefault(phase, []).append(ms)
            uploads[name].append(size / elapsed / 1e6)
    return copies, uploads, phases, job_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=150)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        root = Path(tmp)
        zip_path = root / "study.zip"
        make_zip(zip_path, args.size_mb)
        server = start_server(root / "data", args.port, args.database_url)
        url = f"http://127.0.0.1:{args.port}"
        try:
            clients = {"httpx": upload_httpx}
            if shutil.which("curl"):
                clients["curl"] = upload_curl
            copies, uploads, phases, job_id = bench_ingest(
                zip_path, root / "data", url, server.key, args.repeat, clients)  # type: ignore[attr-defined]
            floor = receive_floor(zip_path, args.port + 1, args.repeat)
            sha_rate = sha256_rate(zip_path, args.repeat)
            cpu_before = process_cpu_s(server.pid)
            load = asyncio.run(run_load(f"{url}/v1/jobs/{job_id}",
                                        {"Authorization": f"Bearer {server.key}"},  # type: ignore[attr-defined]
                                        args.rate, args.seconds))
            cpu_after = process_cpu_s(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
    size_mb = zip_path.stat().st_size / 1e6 if zip_path.exists() else args.size_mb
    if load.errors:
        print(f"poll errors: {len(load.errors)} (first: {load.errors[0]})")
    latencies = load.latencies_ms
    quantiles = statistics.quantiles(latencies, n=100)
    copy_rate = statistics.median(copies)
    db = "postgres" if args.database_url else "sqlite"
    print(f"\nLungCAD gateway benchmark  ({platform.node()}, {os.cpu_count()} cores, "
          f"{platform.python_version()}, db={db}, store=local dir)")
    print(f"{'measure':<42}{'median':>12}  target")
    print("-" * 70)
    print(f"{'plain copy of the zip (MB/s)':<42}{copy_rate:>12.0f}")
    for client, rates in uploads.items():
        upload_rate = statistics.median(rates)
        print(f"{f'upload ingest, {size_mb:.0f} MB zip, {client} (MB/s)':<42}"
              f"{upload_rate:>12.0f}")
        ratio = upload_rate / copy_rate * 100
        print(f"{f'  ingest / plain copy, {client} (%)':<42}{ratio:>12.0f}  >= 50 "
              f"{'PASS' if ratio >= 50 else 'FAIL'}")
    print(f"{'  SHA-256 on one core, from memory (MB/s)':<42}{sha_rate:>12.0f}")
    if floor is not None:
        print(f"{'  HTTP receive floor, curl, body dropped':<42}{floor:>12.0f}")
        upload_rate = statistics.median(uploads.get("curl", []) or [0])
        print(f"{'  ingest curl / receive floor (%)':<42}{upload_rate / floor * 100:>12.0f}")
    for phase, values in phases.items():
        print(f"{f'  server phase {phase}, httpx upload (ms)':<42}"
              f"{statistics.median(values):>12.0f}")
    print(f"{f'poll p50 at {args.rate:.0f} req/s (ms)':<42}{quantiles[49]:>12.2f}")
    if cpu_before is not None and cpu_after is not None:
        print(f"{'gateway CPU per poll (ms)':<42}"
              f"{(cpu_after - cpu_before) / len(latencies) * 1000:>12.2f}")
    p99 = quantiles[98]
    print(f"{f'poll p99 at {args.rate:.0f} req/s (ms)':<42}{p99:>12.2f}  < 20 "
          f"{'PASS' if p99 < 20 else 'FAIL'}")
    print(f"(ingest: {args.repeat} runs per client, phases from the Server-Timing header; "
          f"poll: {len(latencies)} requests over {args.seconds:.0f} s, open loop from "
          f"bench/loadgen.py, latency from the scheduled send time, "
          f"{load.connections} connections)")


if __name__ == "__main__":
    main()
