"""Evaluation on real data with loaded models: detection (FROC / CPM on full studies) and
malignancy (metrics with patient-level bootstrap CIs on a VOI set). Writes predictions, a
metrics JSON and ROC / FROC PNGs into an output folder."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from lungcad_inference import metrics as M
from lungcad_inference.data.studies import Study

log = logging.getLogger(__name__)
CANDIDATE_THRESHOLD = 0.02  # low, to trace the FROC curve well below the operating point


def scan_result(models: Any, study: Study) -> tuple[M.ScanResult, list[Any]]:
    """Detect in ``study`` at a low threshold; positions compared in LPS mm."""
    from lungcad_inference.inference import detect

    saved = models.max_candidates
    models.max_candidates = 100
    try:
        cands = detect(models, study.hu, study.lungs, study.geometry,
                       threshold=CANDIDATE_THRESHOLD)
    finally:
        models.max_candidates = saved
    res = M.ScanResult(study.name, np.array([c.centre_mm for c in cands]).reshape(-1, 3),
                       np.array([c.nodule_probability for c in cands]),
                       np.array([les.centre_mm for les in study.lesions]).reshape(-1, 3),
                       np.array([les.diameter_mm for les in study.lesions]))
    return res, cands


def detection_summary(scans: list[M.ScanResult], threshold: float) -> dict[str, Any]:
    """FROC, CPM and the operating point's sensitivity and FP/scan."""
    curve = M.froc(scans)
    per_scan = []
    for s in scans:
        best, fp, _ = M.match_scan(s)
        per_scan.append({"study": s.name, "lesions": int(len(best)),
                         "found": int((best >= threshold).sum()),
                         "false_positives": int((fp >= threshold).sum()),
                         "lesion_scores": [None if not np.isfinite(b) else float(b)
                                           for b in best]})
    found = sum(p["found"] for p in per_scan)
    total = sum(p["lesions"] for p in per_scan)
    return {"froc": curve, **M.cpm(curve), "operating_threshold": threshold,
            "operating_sensitivity": found / max(1, total),
            "operating_fp_per_scan": sum(p["false_positives"] for p in per_scan) / max(1, len(
                scans)), "per_scan": per_scan}


def write_detection(out_dir: Path, scans: list[M.ScanResult], candidates: dict[str, list[Any]],
                    summary: dict[str, Any], label: str) -> None:
    from lungcad_inference.plots import plot_froc

    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "candidates.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["study", "z", "y", "x", "x_mm", "y_mm", "z_mm", "diameter_mm",
                    "nodule_probability", "malignancy_probability"])
        for name, cands in candidates.items():
            for c in cands:
                w.writerow([name, *(f"{v:.1f}" for v in c.centre_zyx),
                            *(f"{v:.1f}" for v in c.centre_mm), f"{c.diameter_mm:.1f}",
                            f"{c.nodule_probability:.4f}",
                            "" if c.malignancy_probability is None else
                            f"{c.malignancy_probability:.4f}"])
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    plot_froc({label: {**summary["froc"], "cpm": summary["cpm"]}}, out_dir / "froc.png",
              "Detection FROC (real lesions)")


def malignancy_summary(y: np.ndarray, probs: dict[str, np.ndarray], groups: np.ndarray,
                       n_boot: int = 1000) -> dict[str, Any]:
    """Metrics with bootstrap CIs for each score, plus the paired AUC gain of ``cnn`` over
    each size baseline."""
    out: dict[str, Any] = {"n": int(len(y)), "malignant": int((y == 1).sum()),
                           "benign": int((y == 0).sum()), "patients": int(len(np.unique(groups)))}
    for name, p in probs.items():
        out[name] = M.bootstrap_ci(y, p, groups, M.classification_metrics, n_boot)
    if "cnn" in probs:
        for base in [k for k in probs if k.startswith("size")]:
            def delta(yy: np.ndarray, idx: np.ndarray, base: str = base) -> dict[str, float]:
                i = idx.astype(int)
                return {"delta_auc": M.auc(yy, probs["cnn"][i]) - M.auc(yy, probs[base][i])}
            out[f"cnn_minus_{base}"] = M.bootstrap_ci(y, np.arange(len(y)), groups, delta,
                                                       n_boot)["delta_auc"]
    return out


def write_malignancy(out_dir: Path, y: np.ndarray, probs: dict[str, np.ndarray],
                     summary: dict[str, Any], title: str) -> None:
    from lungcad_inference.plots import plot_roc

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    curves = {}
    for name, p in probs.items():
        fpr, tpr = M.roc_curve(y, p)
        curves[name] = (fpr, tpr, M.auc(y, p))
    plot_roc(curves, out_dir / "roc.png", title)
