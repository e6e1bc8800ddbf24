"""Reports-stage benchmark: the inference worker's result files for a 300-slice study with 17
findings, part by part.

    .venv/bin/python bench/bench_reports.py [--repeats 5]

Writes the synthetic chest CT of ``bench_pipeline.py`` (300 slices of 512 x 512, 1.0 mm slices,
0.7 mm pixels) with its four nodules and 13 more (17 in all) as a DICOM series, preprocesses it
(not timed), places one candidate on each nodule and measures them (``analyze_volume``, not
timed), then times what ``render_outputs`` does: reading the series headers, the DICOM SEG,
the DICOM SR, the key images and the overview. Prints the median of each part over
``--repeats`` runs after one warm-up run; "total" is ``render_outputs`` itself, timed
separately. Target (issue 15): total <= 1 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tests' case helpers

EXTRA_NODULES = 13  # with the phantom's four: 17 findings


def nodules() -> list:
    """The phantom's four nodules and 13 small solid ones spread through both lungs."""
    from lungcad import synthetic

    rng = np.random.default_rng(5)
    out = list(synthetic.default_nodules(0.0))
    while len(out) < 4 + EXTRA_NODULES:
        side = 1.0 if len(out) % 2 else -1.0
        centre = (side * rng.uniform(55, 90), rng.uniform(-35, 45), rng.uniform(-80, 90))
        if all(np.linalg.norm(np.subtract(centre, n.center_lps)) > 25 for n in out):
            out.append(synthetic.SyntheticNodule(centre, float(rng.uniform(5, 9))))
    return out


def prepare(folder: Path):  # type: ignore[no-untyped-def]
    from lungcad import synthetic
    from lungcad.findings import ModelInfo
    from lungcad_inference.analysis import PatientInfo, analyze_volume
    from lungcad_preprocess.pipeline import PreprocessOptions, preprocess_path
    from tests.frontend.cases import Placed

    geometry = synthetic.default_geometry(shape=(300, 512, 512), spacing=(1.0, 0.7, 0.7))
    placed = nodules()
    case = synthetic.make_chest_ct(geometry=geometry, nodules=placed, seed=11)
    synthetic.write_dicom_series(case.hu, case.geometry, folder)
    del case
    pre = preprocess_path(folder, PreprocessOptions(threads=2))
    candidates = [Placed(tuple(pre.geometry.world_to_index(n.center_lps)), n.diameter_mm,
                         malignancy_probability=0.3) for n in placed]
    result = analyze_volume(pre.hu, pre.lungs, pre.geometry, pre.meta, candidates,
                            PatientInfo(age=60, sex="F"), ModelInfo(name="bench", version="0"))
    return pre, result


def run_parts(pre, result, folder: Path) -> dict[str, float]:  # type: ignore[no-untyped-def]
    from lungcad_inference import outputs
    from lungcad_inference.reports.source import load_series_headers

    times: dict[str, float] = {}

    def timed(name: str, fn, *args):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        value = fn(*args)
        times[name] = time.perf_counter() - t
        return value

    headers = timed("series headers", load_series_headers, folder, pre.slices)
    seg, segmented = timed("SEG (build)", outputs.seg_report, result.labels,
                           [f.id for f in result.document.findings], result.document.model,
                           pre.geometry, pre.slices, headers)
    timed("SEG (encode)", outputs.dicom_bytes, seg)
    timed("SR (build + encode)", lambda: outputs.dicom_bytes(
        outputs.sr_report(result, headers, seg, segmented)))
    timed("key images", outputs.key_images, pre.hu, result)
    timed("overview", outputs.overview, pre.hu, pre.lungs, result)
    timed("total (render_outputs)", outputs.render_outputs, pre.hu, pre.lungs, pre.geometry,
          pre.meta, result, folder)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lungcad-bench-reports-") as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        pre, result = prepare(folder)
        findings = len(result.document.findings)
        print(f"prepared {len(pre.slices)} slices, {findings} findings, preprocessed grid "
              f"{pre.hu.shape} in {time.perf_counter() - t:.0f} s (not timed)")
        run_parts(pre, result, folder)  # warm-up
        runs = [run_parts(pre, result, folder) for _ in range(args.repeats)]
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}; median of {args.repeats} runs")
    print(f"{'part':<26}{'median s':>10}{'min s':>8}{'max s':>8}")
    for name in runs[0]:
        values = [r[name] for r in runs]
        print(f"{name:<26}{statistics.median(values):>10.3f}{min(values):>8.3f}"
              f"{max(values):>8.3f}")


if __name__ == "__main__":
    main()
