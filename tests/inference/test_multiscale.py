"""The coarse detector pass's pure parts: halving, mapping back to the 1 mm grid with the size
and lung rules, and merging without reporting a lesion twice."""

from __future__ import annotations

import numpy as np
import pytest

from lungcad_inference.decode import RawCandidate
from lungcad_inference.multiscale import coarse_candidates, halve, merge


def test_halve_means_hu_and_keeps_any_lung_voxel() -> None:
    hu = np.arange(4 * 4 * 6, dtype=np.int16).reshape(4, 4, 6)
    half = halve(hu)
    assert half.shape == (2, 2, 3) and half.dtype == np.float32
    assert half[0, 0, 0] == pytest.approx(hu[:2, :2, :2].mean())
    lungs = np.zeros((5, 4, 4), np.uint8)
    lungs[4, 3, 3] = 2  # one voxel on an odd edge
    lh = halve(lungs, "max")
    assert lh.shape == (3, 2, 2) and lh[2, 1, 1] == 2 and lh.sum() == 2
    with pytest.raises(ValueError, match="mean' or 'max"):
        halve(hu, "median")


def test_coarse_candidates_map_back_and_apply_the_size_and_lung_rules() -> None:
    lungs = np.zeros((40, 40, 40), np.uint8)
    lungs[:, :, :20] = 1  # lung in half-grid x < 20, i.e. 40 mm
    raw = [RawCandidate(np.array([10.0, 10.0, 10.0]), 15.0, 0.9),  # 30 mm mass in the lung
           RawCandidate(np.array([10.0, 10.0, 10.0]), 8.0, 0.8),  # 16 mm: the fine pass's
           RawCandidate(np.array([20.0, 20.0, 26.0]), 15.0, 0.7),  # 30 mm, 14 mm outside
           RawCandidate(np.array([20.0, 20.0, 30.0]), 12.0, 0.6)]  # 24 mm, 20 mm outside
    out = coarse_candidates(raw, lungs)
    assert [c.score for c in out] == [0.9, 0.7]
    assert out[0].diameter_mm == 30.0
    np.testing.assert_allclose(out[0].centre_zyx, [20.5, 20.5, 20.5])
    assert coarse_candidates(raw, np.zeros_like(lungs)) == []


def test_merge_reports_each_lesion_once_by_its_higher_score() -> None:
    fine = [RawCandidate(np.array([50.0, 50.0, 50.0]), 8.0, 0.5),
            RawCandidate(np.array([50.0, 50.0, 58.0]), 6.0, 0.45),  # a second fragment
            RawCandidate(np.array([200.0, 50.0, 50.0]), 6.0, 0.95)]
    coarse = [RawCandidate(np.array([55.0, 50.0, 50.0]), 30.0, 0.9),  # covers both fragments
              RawCandidate(np.array([120.0, 50.0, 50.0]), 40.0, 0.6),
              RawCandidate(np.array([205.0, 50.0, 50.0]), 24.0, 0.7)]  # the fine one is higher
    out = merge(fine, coarse)
    assert [c.score for c in out] == [0.95, 0.9, 0.6]


def test_a_coarse_candidate_takes_the_fine_geometry_of_the_same_lesion() -> None:
    fine = [RawCandidate(np.array([50.0, 50.0, 52.0]), 22.0, 0.45),  # the same lesion
            RawCandidate(np.array([150.0, 50.0, 62.0]), 8.0, 0.3)]  # a small fragment of a mass
    coarse = [RawCandidate(np.array([50.0, 50.0, 50.0]), 28.0, 0.6),
              RawCandidate(np.array([150.0, 50.0, 50.0]), 60.0, 0.5)]
    out = merge(fine, coarse)
    assert [c.score for c in out] == [0.6, 0.5]
    np.testing.assert_allclose(out[0].centre_zyx, [50.0, 50.0, 52.0])
    assert out[0].diameter_mm == 22.0
    np.testing.assert_allclose(out[1].centre_zyx, [150.0, 50.0, 50.0])
    assert out[1].diameter_mm == 60.0

