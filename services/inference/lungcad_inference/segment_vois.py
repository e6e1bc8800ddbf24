"""``lungcad evaluate segmentation``: outline every VOI of a nodule-VOI zip with the learned
network and score it against the readers' consensus masks on the VOI's own grid.

For each VOI (``VOIs/image/<stem>.nii.gz``, native spacing, LPS): the image is resampled to the
1 mm grid, cut into a cube around the VOI's centre from ``labels.csv`` (the seed; voxels beyond
the VOI are air, as the network was also trained), segmented
(:func:`lungcad_inference.segmentation.segment_at`), and the probability is resampled back to
the VOI's own grid (linear) and thresholded at 0.5, so the mask lies exactly on that grid.
Measurements: volume, long and short axis on the axial slice of largest extent (native pixels),
type from the 1 mm HU (:func:`lungcad_inference.clinical.measure.classify_type`), Dice and
volume error against ``VOIs/nodule_mask/<stem>.nii.gz`` where present.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from lungcad_inference.data.vois import _int
from lungcad_inference.segmentation import (
    PROBABILITY_THRESHOLD,
    nodule_from_probability,
    segment_probabilities,
)

log = logging.getLogger(__name__)
TYPES = ("ground-glass", "part-solid", "solid")
# probability thresholds the cross-validation chooses among (nested, per fold)
CALIBRATION_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
FIELDS = ("patient_id", "nodule_id", "fold", "volume_mm3", "long_axis_mm", "short_axis_mm",
          "long_axis_3d_mm", "type", "readers_texture", "readers_type", "readers_diameter_mm",
          "reference_volume_mm3", "dice", "volume_error")


def readers_type(texture: int | None) -> str | None:
    """LIDC texture rating -> type: 1-2 ground-glass, 3 part-solid, 4-5 solid."""
    if texture is None:
        return None
    return "ground-glass" if texture <= 2 else "part-solid" if texture == 3 else "solid"


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return float(2 * int((a & b).sum()) / s) if s else 1.0


def largest_3d_extent_mm(mask: np.ndarray, spacing_zyx: np.ndarray) -> float:
    """Largest distance between two voxel centres of the mask plus one voxel (mm)."""
    pts = np.argwhere(mask) * spacing_zyx
    if len(pts) == 0:
        return 0.0
    if len(pts) > 4:
        from scipy.spatial import ConvexHull, QhullError

        try:
            pts = pts[ConvexHull(pts).vertices]
        except (QhullError, ValueError):
            pass
    d = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1)).max()
    return float(d + float(np.mean(spacing_zyx)))


def segment_voi_thresholds(model: Any, image_path: Path, seed_xyz: tuple[float, float, float],
                           thresholds: tuple[float, ...], diameter_hint_mm: float = 10.0,
                           type_model: Any | None = None
                           ) -> dict[float, tuple[Any, np.ndarray, np.ndarray, dict[str, Any]]]:
    """For each of ``thresholds`` (on the network's probability), from one network pass:
    ``(native mask as a SimpleITK uint8 image, native mask array (z, y, x), the mask on the
    VOI's 1 mm grid (the grid of :func:`lungcad_inference.data.vois.load_vois`),
    measurements)``."""
    import SimpleITK as sitk

    from lungcad.imaging import Volume
    from lungcad_preprocess.resample import canonical_grid, resample

    native = sitk.ReadImage(str(image_path))
    volume = Volume.from_sitk(native, np.float32)
    grid = canonical_grid(volume.geometry, 1.0)
    hu = resample(volume, grid, default=-1000.0, threads=1)
    seed = grid.world_to_index(np.asarray(seed_xyz, float))
    [(p, start)] = segment_probabilities(model, hu, [seed], [diameter_hint_mm])
    out = {}
    for t in thresholds:
        mask = nodule_from_probability(p, np.asarray(seed, float) - start, t)
        out[t] = _voi_outline(mask, start, hu, grid, volume, native, type_model)
    return out


def _voi_outline(mask: np.ndarray, start: np.ndarray, hu: np.ndarray, grid: Any, volume: Any,
                 native: Any, type_model: Any | None
                 ) -> tuple[Any, np.ndarray, np.ndarray, dict[str, Any]]:
    """A 1 mm cube mask -> the native mask (image and array), the 1 mm mask on the VOI's
    grid and the measurements."""
    import SimpleITK as sitk

    from lungcad.imaging import Volume
    from lungcad_inference.clinical.measure import classify_type, feret_2d
    from lungcad_preprocess.resample import resample

    prob = np.zeros(grid.shape, np.float32)
    lo = np.maximum(start, 0)
    hi = np.minimum(start + np.array(mask.shape), grid.shape)
    if np.all(hi > lo):
        prob[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = mask[
            tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start, strict=True))]
    one_mm = prob >= 0.5
    soft = Volume(prob, grid).to_sitk()
    back = resample(soft, volume.geometry, default=0.0, threads=1) >= 0.5
    if not back.any() and one_mm.any():  # a nodule thinner than a native slice: nearest voxel
        back = resample(soft, volume.geometry, nearest=True, default=0.0, threads=1) >= 0.5
    native_mask = back.astype(np.uint8)
    out = sitk.GetImageFromArray(native_mask)
    out.CopyInformation(native)
    spacing_zyx = np.array(volume.geometry.spacing)
    areas = native_mask.sum(axis=(1, 2))
    long_axis = short_axis = 0.0
    if areas.max() > 0:
        for z in np.nonzero(areas >= areas.max() * 0.8)[0]:
            la, sa = feret_2d(native_mask[z] > 0, tuple(spacing_zyx[1:]))
            if la > long_axis:
                long_axis, short_axis = la, sa
    nodule_type = classify_type(hu, one_mm)[0] if one_mm.any() else None
    if type_model is not None and one_mm.any():
        from lungcad_inference.clinical.nodule_type import type_features

        nodule_type = type_model.predict(type_features(hu, one_mm))[0]
    info = {"volume_mm3": float(native_mask.sum() * np.prod(spacing_zyx)),
            "long_axis_mm": long_axis, "short_axis_mm": short_axis,
            "long_axis_3d_mm": largest_3d_extent_mm(native_mask > 0, spacing_zyx),
            "type": nodule_type}
    return out, native_mask, one_mm, info


def weighted_kappa(a: list[str], b: list[str], classes: tuple[str, ...] = TYPES) -> float:
    """Cohen's kappa with linear weights over the ordered ``classes``."""
    k = len(classes)
    idx = {c: i for i, c in enumerate(classes)}
    m = np.zeros((k, k))
    for x, y in zip(a, b, strict=True):
        m[idx[x], idx[y]] += 1
    n = m.sum()
    if n == 0:
        return float("nan")
    w = 1 - np.abs(np.subtract.outer(np.arange(k), np.arange(k))) / (k - 1)
    expected = np.outer(m.sum(1), m.sum(0)) / n
    po, pe = (w * m).sum() / n, (w * expected).sum() / n
    return float((po - pe) / (1 - pe)) if pe < 1 else float("nan")


def _bootstrap(values: np.ndarray, groups: np.ndarray, stat: Any, n: int = 1000,
               seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    uniq = np.unique(groups)
    members = [np.nonzero(groups == g)[0] for g in uniq]
    draws = [stat(values[np.concatenate([members[i] for i in
                                         rng.integers(0, len(uniq), len(uniq))])])
             for _ in range(n)]
    return {"value": float(stat(values)),
            "ci95": [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))]}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Median / mean Dice and volume error with patient-level bootstrap intervals, diameter
    error against the readers, and type agreement (confusion matrix, weighted kappa)."""
    scored = [r for r in rows if r.get("dice") is not None]
    out: dict[str, Any] = {"vois": len(rows), "vois_with_reference": len(scored)}
    if scored:
        g = np.array([r["patient_id"] for r in scored])
        d = np.array([r["dice"] for r in scored], float)
        v = np.array([r["volume_error"] for r in scored], float)
        out["dice_median"] = _bootstrap(d, g, np.median)
        out["dice_mean"] = _bootstrap(d, g, np.mean)
        out["volume_abs_error_median"] = _bootstrap(np.abs(v), g, np.median)
        out["volume_error_median_signed"] = float(np.median(v))
        bands = {"3-6 mm": (0, 6), "6-10 mm": (6, 10), "10-20 mm": (10, 20), ">20 mm": (20, 1e9)}
        out["dice_median_by_size"] = {
            k: {"n": int(sel.sum()), "median": float(np.median(d[sel])) if sel.any() else None}
            for k, (a, b) in bands.items()
            for sel in [np.array([a <= r["readers_diameter_mm"] < b for r in scored])]}
    with_d = [r for r in rows if r.get("readers_diameter_mm")]
    if with_d:
        err = np.array([r["long_axis_mm"] - r["readers_diameter_mm"] for r in with_d])
        out["long_axis_minus_readers_diameter_mm"] = {
            "median": float(np.median(err)), "median_abs": float(np.median(np.abs(err)))}
    typed = [r for r in rows if r.get("readers_type") and r.get("type")]
    if typed:
        ours, theirs = [r["type"] for r in typed], [r["readers_type"] for r in typed]
        out["type_weighted_kappa"] = weighted_kappa(ours, theirs)
        out["type_confusion"] = {f"readers {t}": {f"ours {o}": sum(
            1 for a, b in zip(ours, theirs, strict=True) if a == o and b == t) for o in TYPES}
            for t in TYPES}
    return out


def segment_voi_set(models_by_fold: Any, source: Path, out_dir: Path, *,
                    write_masks: bool = True, save_outlines: bool = False,
                    select: Any = None, type_model: Any | None = None,
                    threshold: float = PROBABILITY_THRESHOLD) -> dict[str, Any]:
    """Segment every VOI under ``source`` (zip or folder) with ``models_by_fold(patient_id)``
    -> ``(model, fold label)``; write ``masks/``, ``segmentation.csv`` and
    ``segmentation_metrics.json`` into ``out_dir`` (and, with ``save_outlines``, the 1 mm
    masks as ``outlines.npz``, keyed ``<patient_id>_R_<nodule_id>``); return the summary and
    rows. ``select(labels row)``: which VOIs to segment (default all); ``threshold``: on the
    network's probability."""
    scored = _score_vois(models_by_fold, source, (threshold,), select, type_model)
    return _write_voi_set([(v, threshold) for v in scored], out_dir, write_masks, save_outlines)


def _score_vois(models_by_fold: Any, source: Path, thresholds: tuple[float, ...], select: Any,
                type_model: Any | None) -> list[dict[str, Any]]:
    """Per VOI: ``{"name", "fold", "by_threshold": {t: (image, one_mm, record)}}``, the
    record holding the measurements and, where the VOI has a mask, Dice and volume error."""
    import SimpleITK as sitk

    from lungcad_inference.data.vois import _root, iter_voi_files

    out: list[dict[str, Any]] = []
    with _root(Path(source)) as root:
        for row, image_path, mask_path in iter_voi_files(root):
            if select is not None and not select(row):
                continue
            model, fold = models_by_fold(row["patient_id"])
            seed = (float(row["coordX"]), float(row["coordY"]), float(row["coordZ"]))
            ref_img = sitk.ReadImage(str(mask_path)) if mask_path is not None else None
            ref = sitk.GetArrayFromImage(ref_img) > 0 if ref_img is not None else None
            texture = _int(row.get("Texture_value"))
            by_t = {}
            for t, (image, pred, one_mm, info) in segment_voi_thresholds(
                    model, image_path, seed, thresholds, type_model=type_model).items():
                rec: dict[str, Any] = {"patient_id": row["patient_id"],
                                       "nodule_id": row["nodule_id"], "fold": fold, **info,
                                       "readers_texture": texture,
                                       "readers_type": readers_type(texture),
                                       "readers_diameter_mm": _float(row.get("diameter_mm")),
                                       "reference_volume_mm3": None, "dice": None,
                                       "volume_error": None}
                if ref is not None and ref_img is not None and ref.shape == pred.shape \
                        and ref.any():
                    vox = float(np.prod(ref_img.GetSpacing()))
                    rec["reference_volume_mm3"] = float(ref.sum() * vox)
                    rec["dice"] = dice(pred > 0, ref)
                    rec["volume_error"] = (rec["volume_mm3"] - rec["reference_volume_mm3"]) \
                        / rec["reference_volume_mm3"]
                by_t[t] = (image, one_mm, rec)
            out.append({"name": image_path.name, "fold": fold, "by_threshold": by_t})
    return out


def _write_voi_set(chosen: list[tuple[dict[str, Any], float]], out_dir: Path,
                   write_masks: bool, save_outlines: bool) -> dict[str, Any]:
    """Write each VOI's result at its chosen threshold: masks, CSV, metrics, outlines."""
    import SimpleITK as sitk

    out_dir.mkdir(parents=True, exist_ok=True)
    masks_dir = out_dir / "masks"
    if write_masks:
        masks_dir.mkdir(exist_ok=True)
    rows: list[dict[str, Any]] = []
    outlines: dict[str, np.ndarray] = {}
    for voi, t in chosen:
        image, one_mm, rec = voi["by_threshold"][t]
        if save_outlines:
            key = f"{rec['patient_id']}_R_{rec['nodule_id']}"
            outlines[key] = np.packbits(one_mm)
            outlines[f"{key}_shape"] = np.array(one_mm.shape)
        if write_masks:
            sitk.WriteImage(image, str(masks_dir / voi["name"]))
        rows.append(rec)
    summary = summarise(rows)
    with (out_dir / "segmentation.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in FIELDS})
    (out_dir / "segmentation_metrics.json").write_text(json.dumps(summary, indent=2))
    if save_outlines:
        np.savez_compressed(out_dir / "outlines.npz", **outlines)
    return {"summary": summary, "rows": rows}


def read_outlines(path: Path) -> dict[tuple[str, str], np.ndarray]:
    """``{(patient_id, nodule_id): bool mask on the VOI's 1 mm grid}`` from ``outlines.npz``."""
    out = {}
    with np.load(path) as data:
        for key in data.files:
            if key.endswith("_shape"):
                continue
            shape = tuple(int(v) for v in data[f"{key}_shape"])
            mask = np.unpackbits(data[key], count=int(np.prod(shape))).reshape(shape)
            patient, nodule = key.rsplit("_R_", 1)
            out[(patient, nodule)] = mask.astype(bool)
    return out


def cross_validated_segmentation(fold_models: list[Any], source: Path, out_dir: Path, *,
                                 threads: int = 2,
                                 thresholds: tuple[float, ...] = CALIBRATION_THRESHOLDS
                                 ) -> dict[str, Any]:
    """Every VOI scored by the fold model that never saw its patient (the shared split), at
    a probability threshold chosen without its fold: for fold k, the threshold of
    ``thresholds`` with the highest mean Dice over the other folds' out-of-fold outlines
    (nested, so no VOI's threshold is chosen on it). The out-of-fold 1 mm outlines are kept
    (``outlines.npz``) for the malignancy model's CV. The summary adds the per-fold
    thresholds, the out-of-fold mean Dice at each threshold and ``calibrated_threshold``
    (the best over all folds: the one the final model ships with)."""
    import torch

    from lungcad_inference.training.splits import fold_of

    torch.set_num_threads(threads)
    k = len(fold_models)
    scored = _score_vois(lambda pid: (fold_models[fold_of(pid, k)], fold_of(pid, k)), source,
                         tuple(thresholds), None, None)
    by_fold = {f: choose_threshold([v for v in scored if v["fold"] != f], thresholds)
               for f in range(k)}
    result = _write_voi_set([(v, by_fold[v["fold"]]) for v in scored], out_dir,
                            write_masks=False, save_outlines=True)
    summary = result["summary"]
    summary["threshold_by_fold"] = {str(f): t for f, t in by_fold.items()}
    summary["dice_mean_by_threshold"] = {str(t): _mean_dice(scored, t) for t in thresholds}
    summary["calibrated_threshold"] = choose_threshold(scored, thresholds)
    (out_dir / "segmentation_metrics.json").write_text(json.dumps(summary, indent=2))
    return {"summary": summary}


def _mean_dice(scored: list[dict[str, Any]], t: float) -> float:
    d = [v["by_threshold"][t][2]["dice"] for v in scored
         if v["by_threshold"][t][2]["dice"] is not None]
    return float(np.mean(d)) if d else float("nan")


def choose_threshold(scored: list[dict[str, Any]], thresholds: tuple[float, ...]) -> float:
    """The threshold with the highest mean Dice over ``scored`` (ties: the lowest)."""
    means = [_mean_dice(scored, t) for t in thresholds]
    if all(np.isnan(m) for m in means):
        return PROBABILITY_THRESHOLD
    return float(thresholds[int(np.nanargmax(means))])


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None
