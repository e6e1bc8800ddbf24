"""Segmentation and measurement benchmark: the learned outlines of 20 candidates and their
measurements (``analyze_volume``'s per-finding work), on CPU, after preprocessing.

Per study (the shared real studies when present, else the synthetic chest CT): the shipped
detector proposes candidates at a low threshold until there are 20 (the serving cap); the
timed stages are the segmentation network over the 20 seeds (``segment_at``, including the
larger second pass for nodules that reach the cube's faces) and measuring the 20 outlines
(``measure_nodule``). Median of ``--repeats`` runs after one warm-up run; the table says the
machine, torch and the thread count.

    python bench/bench_segmentation.py --threads 2 [--data ../shared/data] [--repeats 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

STUDIES = ("LIDC-IDRI-0001", "LIDC-IDRI-0003", "QIN-LSC-0014", "QIN-LSC-0049", "QIN-LSC-0064",
           "QIN-LSC-0088")
CANDIDATES = 20


def volumes(data: Path, cache: Path, names: Sequence[str]) -> list[tuple[str, Any, Any]]:
    """``(name, hu, lungs)`` of the real studies found, else of the synthetic chest CT."""
    out = []
    for name in names:
        path = data / "ct" / f"{name}.zip"
        if path.exists():
            from lungcad_inference.data.studies import load_study

            s = load_study(path, cache)
            out.append((name, s.hu, s.lungs))
    if not out:
        from lungcad.synthetic import make_chest_ct

        ct = make_chest_ct()
        from lungcad.imaging import Volume
        from lungcad_preprocess.pipeline import PreprocessOptions, preprocess_volume

        pre = preprocess_volume(Volume(ct.hu, ct.geometry), {"format": "synthetic"},
                                PreprocessOptions(threads=1))
        out.append(("synthetic chest CT", pre.hu, pre.lungs))
    return out


def time_study(models: Any, hu: np.ndarray, lungs: np.ndarray, repeats: int
               ) -> dict[str, Any]:
    from lungcad_inference.clinical.measure import measure_nodule
    from lungcad_inference.decode import decode
    from lungcad_inference.inference import run_detector
    from lungcad_inference.segmentation import segment_at

    raw = decode(run_detector(models, hu), 4, lungs, threshold=0.01,
                 max_candidates=CANDIDATES)
    seeds = [r.centre_zyx for r in raw]
    diam = [r.diameter_mm for r in raw]
    seg_s, measure_s = [], []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        outlines = segment_at(models.segmentation, hu, seeds, diam, models.device)
        t1 = time.perf_counter()
        for r, o in zip(raw, outlines, strict=True):
            measure_nodule(hu, lungs, tuple(r.centre_zyx), r.diameter_mm, o)
        t2 = time.perf_counter()
        if i:  # the first run warms up
            seg_s.append(t1 - t0)
            measure_s.append(t2 - t1)
    cubes = [o[0].shape[0] for o in outlines]
    return {"candidates": len(raw), "segment_s": statistics.median(seg_s),
            "measure_s": statistics.median(measure_s),
            "total_s": statistics.median(a + b for a, b in zip(seg_s, measure_s, strict=True)),
            "cubes": {s: cubes.count(s) for s in sorted(set(cubes))}}


def format_table(rows: list[dict[str, Any]], threads: int) -> str:
    import torch

    head = (f"segment + measure {CANDIDATES} candidates, CPU, {threads} threads, torch "
            f"{torch.__version__}, {platform.machine()} (median of runs)\n"
            f"{'study':<20}{'cands':>6}{'segment':>10}{'measure':>10}{'total':>9}  cube sizes")
    lines = [head]
    for r in rows:
        cubes = ", ".join(f"{n}x{s}^3" for s, n in r["cubes"].items())
        lines.append(f"{r['study']:<20}{r['candidates']:>6}{r['segment_s']:>9.2f}s"
                     f"{r['measure_s']:>9.2f}s{r['total_s']:>8.2f}s  {cubes}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / "../shared/data"))
    p.add_argument("--cache", default="var/cache/studies")
    p.add_argument("--studies", nargs="+", default=list(STUDIES))
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    from lungcad_inference.inference import load_models

    models = load_models("cpu", args.threads)
    if models.segmentation is None:
        print("no segmentation weights (segmentation.pt): nothing to time")
        return 2
    rows = [{"study": name, **time_study(models, hu, lungs, args.repeats)}
            for name, hu, lungs in volumes(Path(args.data), Path(args.cache), args.studies)]
    print(format_table(rows, args.threads))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
