"""Detector benchmark on the real shared studies, after preprocessing, on CPU.

Per study: detector wall time (one fully convolutional pass + decoding + malignancy scoring of
the candidates, i.e. ``detect()``), the network pass alone, peak resident memory during the
pass, FLOPs of the pass (``torch.utils.flop_counter``) and the achieved GFLOP/s, beside the
machine's measured fp32 matmul GFLOP/s. Preprocessing is not timed (cached).

    python bench/bench_detector.py --threads 2 [--data ../shared/data] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
import time
from pathlib import Path

log = logging.getLogger("bench_detector")
STUDIES = ("LIDC-IDRI-0001", "LIDC-IDRI-0003", "QIN-LSC-0014", "QIN-LSC-0088")


class PeakRss:
    """Samples this process's resident set size every 10 ms."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.01)

    def __enter__(self) -> PeakRss:
        self.base = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    t = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    return 2 * n**3 * repeats / (time.perf_counter() - t) / 1e9


def main() -> int:
    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from lungcad_inference.data.studies import load_study
    from lungcad_inference.inference import detect, load_models, run_detector
    from lungcad_inference.intensity import normalise_hu

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / "../shared/data"))
    p.add_argument("--cache", default="var/cache/studies")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    models = load_models("cpu", args.threads)
    mm = matmul_gflops()
    log.info("fp32 matmul: %.0f GFLOP/s with %d threads", mm, args.threads)
    rows = []
    for name in STUDIES:
        zip_path = Path(args.data) / "ct" / f"{name}.zip"
        if not zip_path.exists():
            log.warning("skipping %s: %s absent", name, zip_path)
            continue
        study = load_study(zip_path, Path(args.cache))
        run_detector(models, study.hu[:64, :64, :64])  # warm-up
        shape = [n + (-n) % 16 for n in study.hu.shape]
        x = torch.from_numpy(normalise_hu(np.zeros(shape, np.int16)))[None, None]
        with FlopCounterMode(display=False) as fc, torch.inference_mode():
            models.detector(x.contiguous(memory_format=torch.channels_last_3d))
        flops = fc.get_total_flops()
        net_s, det_s = [], []
        with PeakRss() as rss:
            for _ in range(args.repeats):
                t = time.perf_counter()
                run_detector(models, study.hu)
                net_s.append(time.perf_counter() - t)
                t = time.perf_counter()
                cands = detect(models, study.hu, study.lungs, study.geometry)
                det_s.append(time.perf_counter() - t)
        row = {"study": name, "shape_zyx": list(study.hu.shape), "padded_zyx": shape,
               "network_s": round(min(net_s), 2), "detect_s": round(min(det_s), 2),
               "candidates": len(cands), "gflop": round(flops / 1e9, 1),
               "achieved_gflops": round(flops / 1e9 / min(net_s), 1),
               "peak_rss_gb": round(rss.peak / 1e9, 2),
               "peak_rss_increase_gb": round((rss.peak - rss.base) / 1e9, 2)}
        rows.append(row)
        log.info(json.dumps(row))
    result = {"threads": args.threads, "matmul_gflops": round(mm, 1), "studies": rows,
              "torch": torch.__version__}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
