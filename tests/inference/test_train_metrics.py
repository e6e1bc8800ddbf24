"""Evaluation metrics: FROC / CPM matching rules, AUC, bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest

from lungcad_inference import metrics as M


def _scan(cands, scores, lesions, diam):  # type: ignore[no-untyped-def]
    return M.ScanResult("s", np.array(cands, float).reshape(-1, 3), np.array(scores, float),
                        np.array(lesions, float).reshape(-1, 3), np.array(diam, float))


def test_hits_within_radius_and_duplicates_are_not_false_positives() -> None:
    s = _scan([[0, 0, 4.9], [0, 0, 1], [50, 0, 0], [0, 0, 5.1 + 10]], [0.9, 0.8, 0.7, 0.6],
              [[0, 0, 0]], [10.0])
    best, fp, hit = M.match_scan(s)
    assert best[0] == 0.9
    assert list(fp) == [0.7, 0.6]
    assert list(hit) == [0, 0, -1, -1]


def test_froc_and_cpm() -> None:
    scans = [_scan([[0, 0, 0], [30, 0, 0]], [0.9, 0.5], [[0, 0, 0], [90, 0, 0]], [6, 6]),
             _scan([[0, 0, 0]], [0.3], [[0, 0, 0]], [6])]
    curve = M.froc(scans)
    assert curve["lesions"] == 3
    c = M.cpm(curve)
    assert c["sens@0.125"] == pytest.approx(1 / 3)
    assert c["sens@0.5"] == pytest.approx(2 / 3)  # threshold 0.3: 1 FP over 2 scans
    assert c["sens@8"] == pytest.approx(2 / 3)


def test_auc_matches_pairwise_definition() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.round(rng.random(200) + 0.3 * y, 1)  # ties on purpose
    pos, neg = p[y == 1], p[y == 0]
    pairs = (pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean()
    assert M.auc(y, p) == pytest.approx(pairs)


def test_bootstrap_interval_contains_the_estimate() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    p = rng.random(300) * 0.5 + 0.4 * y
    groups = np.arange(300) // 2
    ci = M.bootstrap_ci(y, p, groups, M.classification_metrics, n=200)
    lo, hi = ci["auc"]["ci95"]
    assert lo < ci["auc"]["value"] < hi and hi - lo < 0.2
    assert set(ci) == {"auc", "accuracy", "precision", "recall", "specificity"}
