"""Evaluation metrics: FROC and the LUNA16 CPM for detection; AUC, accuracy, precision, recall
and specificity with patient-level bootstrap 95 % intervals for malignancy. Pure numpy."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

CPM_FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


# -- detection ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScanResult:
    """One scan's candidates (centres zyx or LPS, in mm units, scores) and reference lesions."""

    name: str
    candidates_mm: np.ndarray  # (n, 3)
    scores: np.ndarray  # (n,)
    lesions_mm: np.ndarray  # (m, 3)
    diameters_mm: np.ndarray  # (m,)


def match_scan(scan: ScanResult) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LUNA16 matching: a candidate hits a lesion when its centre lies within the lesion's
    radius. Returns ``(tp_scores_per_lesion, fp_scores, hit_lesion_per_candidate)``: the best
    score among each lesion's hits (-inf if missed) and the scores of candidates hitting no
    lesion (candidates hitting an already-hit lesion are neither, as in LUNA16)."""
    n, m = len(scan.scores), len(scan.diameters_mm)
    best = np.full(m, -np.inf)
    hit_of = np.full(n, -1)
    fp = []
    for i in range(n):
        if m:
            d = np.linalg.norm(scan.lesions_mm - scan.candidates_mm[i], axis=1)
            inside = np.nonzero(d <= scan.diameters_mm / 2.0)[0]
        else:
            inside = np.zeros(0, int)
        if inside.size:
            j = inside[np.argmin(d[inside])]
            hit_of[i] = j
            best[j] = max(best[j], scan.scores[i])
        else:
            fp.append(scan.scores[i])
    return best, np.asarray(fp, float), hit_of


def froc(scans: Sequence[ScanResult]) -> dict[str, list[float]]:
    """FROC curve: sensitivity vs average false positives per scan over all thresholds."""
    tp_scores, fp_scores = [], []
    for s in scans:
        best, fp, _ = match_scan(s)
        tp_scores.append(best)
        fp_scores.append(fp)
    tp = np.concatenate(tp_scores) if tp_scores else np.zeros(0)
    fp = np.concatenate(fp_scores) if fp_scores else np.zeros(0)
    return _curve(tp, fp, len(scans))


def _curve(tp: np.ndarray, fp: np.ndarray, n_scans: int) -> dict[str, list[float]]:
    thresholds = np.unique(np.concatenate([tp[np.isfinite(tp)], fp, [np.inf]]))[::-1]
    n_les = max(1, len(tp))
    sens = [float((tp >= t).sum() / n_les) for t in thresholds]
    fps = [float((fp >= t).sum() / max(1, n_scans)) for t in thresholds]
    return {"thresholds": [float(t) for t in thresholds], "fp_per_scan": fps,
            "sensitivity": sens, "lesions": int(len(tp)), "scans": int(n_scans)}


def froc_from_records(records: Sequence[object], scans: Sequence[ScanResult]
                      ) -> dict[str, list[float]]:
    """A FROC curve (as :func:`froc`) for a subset of lesions, given as records with a
    ``score`` (their best hit, -inf when missed), against every false positive of ``scans``
    (a rate is per scan, whatever the lesion)."""
    tp = np.array([float(r.score) for r in records])  # type: ignore[attr-defined]
    fp = np.concatenate([match_scan(s)[1] for s in scans]) if scans else np.zeros(0)
    return _curve(tp, fp, len(scans))


def cpm(curve: dict[str, list[float]], rates: Sequence[float] = CPM_FP_RATES
        ) -> dict[str, float]:
    """LUNA16 CPM: mean sensitivity at the given FP/scan rates (the sensitivity reached at the
    largest threshold-set with at most that many FP/scan)."""
    fps = np.asarray(curve["fp_per_scan"])
    sens = np.asarray(curve["sensitivity"])
    out = {}
    for r in rates:
        ok = fps <= r
        out[f"sens@{r:g}"] = float(sens[ok].max()) if ok.any() else 0.0
    out["cpm"] = float(np.mean([out[f"sens@{r:g}"] for r in rates]))
    return out


# -- classification ----------------------------------------------------------------------------
def auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC (Mann-Whitney, ties counted half); NaN with a single class."""
    y, p = np.asarray(y, int), np.asarray(p, float)
    pos, neg = p[y == 1], p[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    allv = np.concatenate([pos, neg])[order]
    ranks = np.empty(len(allv))
    i = 0
    while i < len(allv):  # average ranks of ties
        j = i
        while j + 1 < len(allv) and allv[j + 1] == allv[i]:
            j += 1
        ranks[i:j + 1] = (i + j) / 2.0 + 1
        i = j + 1
    r = np.empty(len(allv))
    r[order] = ranks
    return float((r[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def roc_curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(fpr, tpr)`` over all thresholds."""
    y, p = np.asarray(y, int), np.asarray(p, float)
    thr = np.unique(p)[::-1]
    P, N = max(1, (y == 1).sum()), max(1, (y == 0).sum())
    tpr = [0.0] + [float(((p >= t) & (y == 1)).sum() / P) for t in thr]
    fpr = [0.0] + [float(((p >= t) & (y == 0)).sum() / N) for t in thr]
    return np.asarray(fpr), np.asarray(tpr)


def threshold_metrics(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    y, pred = np.asarray(y, int), np.asarray(p, float) >= threshold
    tp = float((pred & (y == 1)).sum())
    tn = float((~pred & (y == 0)).sum())
    fp = float((pred & (y == 0)).sum())
    fn = float((~pred & (y == 1)).sum())
    nan = float("nan")
    return {"accuracy": (tp + tn) / max(1.0, len(y)),
            "precision": tp / (tp + fp) if tp + fp else nan,
            "recall": tp / (tp + fn) if tp + fn else nan,
            "specificity": tn / (tn + fp) if tn + fp else nan}


def classification_metrics(y: np.ndarray, p: np.ndarray, threshold: float = 0.5
                           ) -> dict[str, float]:
    return {"auc": auc(y, p), **threshold_metrics(y, p, threshold)}


def bootstrap_ci(y: np.ndarray, p: np.ndarray, groups: np.ndarray,
                 metric: Callable[[np.ndarray, np.ndarray], dict[str, float]],
                 n: int = 1000, seed: int = 0) -> dict[str, dict[str, float]]:
    """Point estimate and percentile 95 % CI of each metric, resampling whole ``groups``
    (patients) with replacement so correlated nodules stay together."""
    y, p, groups = np.asarray(y), np.asarray(p), np.asarray(groups)
    rng = np.random.default_rng(seed)
    uniq = np.unique(groups)
    members = [np.nonzero(groups == g)[0] for g in uniq]
    point = metric(y, p)
    draws: dict[str, list[float]] = {k: [] for k in point}
    for _ in range(n):
        idx = np.concatenate([members[i] for i in rng.integers(0, len(uniq), len(uniq))])
        for k, v in metric(y[idx], p[idx]).items():
            if np.isfinite(v):
                draws[k].append(v)
    return {k: {"value": float(point[k]),
                "ci95": [float(np.percentile(draws[k], 2.5)), float(np.percentile(draws[k], 97.5))]
                if draws[k] else [float("nan"), float("nan")]} for k in point}
