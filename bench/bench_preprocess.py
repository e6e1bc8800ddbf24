"""Benchmark preprocessing: per-step times and peak RSS on the shared studies and a synthetic
512 x 512 x 300 series, with a plain read of the same bytes as the floor.

    python bench/bench_preprocess.py [--repeats 3] [--no-real] [--no-synthetic]

Each repetition runs in a fresh forked process so its peak RSS is its own. Prints medians.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench_preprocess")


def plain_read_s(folder: Path) -> float:
    start = time.perf_counter()
    for path in folder.rglob("*"):
        if path.is_file():
            path.read_bytes()
    return time.perf_counter() - start


def one_run(folder: Path, out_json: Path) -> None:
    from lungcad.storage.local import LocalStore
    from lungcad_preprocess.pipeline import preprocess_path
    from lungcad_preprocess.store import store_preprocessed

    start = time.perf_counter()
    result = preprocess_path(folder)
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        store_preprocessed(LocalStore(Path(tmp)), "bench", result.hu, result.lungs, result.meta)
    timings = {**result.timings_s, "store": time.perf_counter() - t,
               "total": time.perf_counter() - start}
    out_json.write_text(json.dumps({"timings": timings, "shape": list(result.hu.shape)}))


def measure(folder: Path, repeats: int) -> dict[str, object]:
    runs = []
    for _ in range(repeats):
        plain_read_s(folder)  # warm the page cache like a worker that just downloaded it
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "r.json"
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    one_run(folder, out)
                    code = 0
                finally:
                    os._exit(code)
            _, status, usage = os.wait4(pid, 0)
            if status != 0:
                raise RuntimeError(f"benchmark run failed on {folder}")
            data = json.loads(out.read_text())
        data["peak_rss_mb"] = usage.ru_maxrss / 1024.0
        data["floor"] = plain_read_s(folder)
        runs.append(data)
    steps = ["floor", "read", "resample", "segment", "store", "total"]
    row = {s: statistics.median(r["timings"].get(s, r.get(s, 0.0)) if s != "floor"
                                else r["floor"] for r in runs) for s in steps}
    row["peak_rss_mb"] = statistics.median(r["peak_rss_mb"] for r in runs)
    row["shape"] = runs[0]["shape"]
    return row


def synthetic_series(dest: Path) -> Path:
    from lungcad.synthetic import default_geometry, make_chest_ct, write_dicom_series

    g = default_geometry((300, 512, 512), (1.0, 0.7, 0.7))
    ct = make_chest_ct(g, seed=0)
    write_dicom_series(ct.hu, g, dest)
    return dest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-real", action="store_true")
    parser.add_argument("--no-synthetic", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data = Path(os.environ.get("LUNGCAD_SHARED_DATA", REPO / "../shared/data")).resolve()
    rows: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="lungcad-bench-") as tmp:
        cases: dict[str, Path] = {}
        if not args.no_real:
            zips = sorted((data / "ct").glob("*.zip"))
            if not zips:
                log.warning("no shared studies under %s: real cases skipped", data)
            for z in zips:
                dest = Path(tmp) / z.stem
                with zipfile.ZipFile(z) as zf:
                    zf.extractall(dest)
                cases[z.stem] = dest
        if not args.no_synthetic:
            log.info("rendering the synthetic 512x512x300 series ...")
            cases["synthetic-512x512x300"] = synthetic_series(Path(tmp) / "synthetic")
        for name, folder in cases.items():
            log.info("benchmarking %s", name)
            rows[name] = measure(folder, args.repeats)
    header = (f"{f'case (median of {args.repeats})':<26}{'shape zyx':>16}{'floor':>7}"
              f"{'read':>7}{'resamp':>7}{'segm':>7}{'store':>7}{'total':>7}{'RSS MB':>8}")
    print(header)
    print("-" * len(header))
    for name, r in rows.items():
        shape = "x".join(str(v) for v in r["shape"])
        print(f"{name:<26}{shape:>16}" + "".join(
            f"{r[s]:>7.2f}" for s in ("floor", "read", "resample", "segment", "store", "total"))
            + f"{r['peak_rss_mb']:>8.0f}")
    print("seconds; floor = plain read of the same bytes; total = read..store in one process")
    return 0


if __name__ == "__main__":
    sys.path[:0] = [str(REPO / "shared"), str(REPO / "services" / "preprocess")]
    raise SystemExit(main())
