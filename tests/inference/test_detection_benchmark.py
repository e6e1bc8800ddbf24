"""The held-out detection benchmark's arithmetic: groups, sensitivity at FP rates with the
LUNA16 convention, intervals, and the juxtapleural test."""

from __future__ import annotations

import numpy as np
import pytest

from lungcad_inference import metrics as M
from lungcad_inference.detection_benchmark import (
    LesionRecord,
    froc_table,
    froc_with_intervals,
    grouped_froc,
    sensitivity_at_rates,
    size_band,
    texture_class,
    touches_border,
)


def test_texture_and_size_groups() -> None:
    assert [texture_class(t) for t in (1, 2, 3, 4, 5, None)] == \
        ["ground-glass", "ground-glass", "part-solid", "solid", "solid", "unknown"]
    assert [size_band(d) for d in (3.2, 6.0, 9.9, 10.0, 25.0)] == \
        ["3-6 mm", "6-10 mm", "6-10 mm", "10-20 mm", "> 20 mm"]


def _rec(scan: str, score: float, texture: str = "solid") -> LesionRecord:
    return LesionRecord(scan, "inserted", 8.0, texture, "6-10 mm", False, score)


def test_sensitivity_counts_lesions_above_the_fp_rate_threshold() -> None:
    # two scans, FP scores 0.9 and 0.5 (scan a) and 0.7 (scan b)
    fps = [np.array([0.9, 0.5]), np.array([0.7])]
    recs = [_rec("a", 0.95), _rec("a", 0.8), _rec("b", 0.6), _rec("b", -np.inf)]
    f = sensitivity_at_rates(recs, fps, rates=(0.5, 1.0, 2.0))
    # 0.5 FP/scan = 1 FP allowed: threshold just above 0.7 -> 0.95, 0.8 found
    assert f["sensitivity"] == [0.5, 0.75, 0.75]
    assert f["cpm"] == pytest.approx(2 / 3)


def test_intervals_and_groups_from_scans() -> None:
    scans = [M.ScanResult(n, np.array([[0.0, 0.0, 100.0]]), np.array([s]),
                          np.array([[0.0, 0.0, 0.0]]), np.array([10.0]))
             for n, s in (("a", 0.2), ("b", 0.4), ("c", 0.1))]
    recs = [_rec("a", 0.9), _rec("b", 0.3, "ground-glass"), _rec("c", 0.95)]
    f = froc_with_intervals(recs, scans, n_boot=200)
    assert f["lesions"] == 3 and len(f["sensitivity_ci95"]) == 7
    lo, hi = f["cpm_ci95"]
    assert lo <= f["cpm"] <= hi
    g = grouped_froc(recs, scans, n_boot=50)
    assert g["texture"]["ground-glass"]["lesions"] == 1
    assert g["texture"]["ground-glass"]["sensitivity"][0] == 0.0  # 0.3 < the FP at 0.4
    assert g["texture"]["ground-glass"]["sensitivity"][-1] == 1.0  # 8 FP/scan: all kept
    assert "not juxtapleural" in g["juxtapleural"]
    assert "ground-glass" in froc_table(g, "t")


def test_touches_border() -> None:
    lungs = np.zeros((40, 40, 40), np.uint8)
    lungs[5:35, 5:35, 5:35] = 1
    assert not touches_border(lungs, np.array([20.0, 20.0, 20.0]), 10.0)
    assert touches_border(lungs, np.array([20.0, 20.0, 8.0]), 4.0)  # reaches x = 4
    assert not touches_border(lungs, np.array([20.0, 20.0, 9.0]), 4.0)


def test_froc_of_a_lesion_subset_uses_every_false_positive() -> None:
    scans = [M.ScanResult(n, np.array([[0.0, 0.0, 100.0]]), np.array([s]),
                          np.array([[0.0, 0.0, 0.0]]), np.array([10.0]))
             for n, s in (("a", 0.2), ("b", 0.4))]
    curve = M.froc_from_records([_rec("a", 0.9), _rec("b", 0.3)], scans)
    i = curve["thresholds"].index(0.3)
    assert curve["sensitivity"][i] == 1.0 and curve["fp_per_scan"][i] == 0.5
    assert M.cpm(curve)["sens@0.25"] == 0.5


def test_gallery_draws_misses_and_false_positives(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from lungcad.imaging import Geometry
    from lungcad_inference.data.lesions import Lesion
    from lungcad_inference.data.studies import Study
    from lungcad_inference.gallery import write_gallery
    from lungcad_inference.inference import Candidate

    hu = np.full((40, 60, 60), -850, np.int16)
    geometry = Geometry(hu.shape, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    study = Study("S", hu, np.ones_like(hu, np.uint8), geometry,
                  [Lesion((30.0, 30.0, 20.0), 8.0, "test")])
    fp = Candidate((10.0, 10.0, 10.0), (10.0, 10.0, 10.0), 6.0, 0.9, None, 5.0)
    scan = M.ScanResult("S", np.array([fp.centre_mm]), np.array([0.9]),
                        np.array([[30.0, 30.0, 20.0]]), np.array([8.0]))
    paths = write_gallery(tmp_path, study, scan, [fp], threshold=0.5)
    assert [p.name for p in paths] == ["S_miss1.png", "S_fp1.png"]
    assert all(p.stat().st_size > 1000 for p in paths)
