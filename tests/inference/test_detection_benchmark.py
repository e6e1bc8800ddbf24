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
