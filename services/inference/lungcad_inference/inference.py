"""Serving: load the shipped networks once, then find and score nodules in a preprocessed study.

Usage (one :class:`Models` per worker process, created explicitly, never at import)::

    models = load_models(device=None, threads=None)
    candidates = detect(models, hu_zyx, lungs_zyx, geometry)

Inputs are the output of ``lungcad_preprocess.pipeline.preprocess_path``: ``hu_zyx`` int16 HU
and ``lungs_zyx`` uint8 lung labels (0 outside), both ``(z, y, x)`` on ``geometry``, a 1 mm
isotropic grid (:data:`~lungcad_inference.intensity.INPUT_SPACING_MM`). HU are windowed to
[-1000, 400] (:data:`~lungcad_inference.intensity.HU_WINDOW`) and scaled to [-1, 1].

The detector runs as one fully convolutional pass over the whole (lung-cropped) volume, padded
to a multiple of 16 (memory grows linearly with the volume: about 1.5 GB for a 300^3 box).
Candidates are heatmap peaks above the operating threshold (default from the weights' sidecar,
``detector.json`` ``operating_threshold``), within 8 mm of the lung mask, at most
``max_candidates``. A second pass of the same network on the volume halved to 2 mm adds
masses of 20 mm or more that the first pass did not report (:mod:`.multiscale`). Each
candidate is then scored by the malignancy network on a 32 mm cube around it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from lungcad_inference.decode import decode
from lungcad_inference.intensity import HU_WINDOW, normalise_hu
from lungcad_inference.multiscale import COARSE_MIN_MM
from lungcad_inference.nodule_size import equivalent_diameter_mm, segment_nodule, size_features
from lungcad_inference.weights import (
    DETECTOR,
    MALIGNANCY,
    SEGMENTATION,
    WEIGHTS_DIR,
    load_network,
)

log = logging.getLogger(__name__)
PATCH_MM = 32
BOX_MARGIN_MM = 4


@dataclass(frozen=True)
class Candidate:
    """One detected nodule candidate.

    ``centre_zyx``: continuous voxel ``(z, y, x)`` on the preprocessed grid; ``centre_mm``:
    patient LPS ``(x, y, z)``; ``diameter_mm``: the detector's diameter estimate;
    ``nodule_probability``: detector heatmap peak; ``malignancy_probability``: malignancy
    network output (``None`` when no malignancy model is loaded); ``segmented_diameter_mm``:
    volume-equivalent diameter of the candidate's own threshold segmentation.
    """

    centre_zyx: tuple[float, float, float]
    centre_mm: tuple[float, float, float]
    diameter_mm: float
    nodule_probability: float
    malignancy_probability: float | None
    segmented_diameter_mm: float
    outline: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False,
                                                          compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The candidate's numbers (the learned outline, an array, is left out)."""
        return {k: v for k, v in asdict(replace(self, outline=None)).items() if k != "outline"}


@dataclass
class Models:
    """Networks in eval mode plus their sidecar metadata and the operating threshold."""

    detector: Any
    malignancy: Any | None
    device: Any
    threshold: float
    detector_meta: dict[str, Any]
    malignancy_meta: dict[str, Any]
    max_candidates: int = 20
    segmentation: Any | None = None
    segmentation_meta: dict[str, Any] = field(default_factory=dict)
    # the coarse pass (:mod:`lungcad_inference.multiscale`) keeps candidates of at least this
    # diameter; None: no coarse pass
    coarse_min_mm: float | None = COARSE_MIN_MM

    def type_model(self) -> Any | None:
        """The learned nodule-type head shipped with the segmentation weights, if any."""
        data = self.segmentation_meta.get("type_model")
        if not data:
            return None
        from lungcad_inference.clinical.nodule_type import TypeModel

        return TypeModel.from_dict(data)

    def segmenter(self) -> Any | None:
        """``segment(hu, seeds_zyx, diameters_mm)`` with the learned network, or ``None``
        when no segmentation weights are loaded."""
        if self.segmentation is None:
            return None
        from functools import partial

        from lungcad_inference.segmentation import segment_at

        return partial(segment_at, self.segmentation, device=self.device,
                       threshold=self.segmentation_threshold)

    @property
    def segmentation_threshold(self) -> float:
        """The probability threshold the segmentation weights were calibrated for (their
        sidecar's ``probability_threshold``; 0.5 for older weights)."""
        from lungcad_inference.segmentation import PROBABILITY_THRESHOLD

        return float(self.segmentation_meta.get("probability_threshold", PROBABILITY_THRESHOLD))

    @property
    def name(self) -> str:
        parts = ["lungcad-detector"] + (["malignancy"] if self.malignancy is not None else []) \
            + (["segmentation"] if self.segmentation is not None else [])
        return "+".join(parts)

    @property
    def version(self) -> str:
        """The weights' versions, at most 40 characters (the findings table's column)."""
        det = self.detector_meta.get("version", "unknown")
        mal = self.malignancy_meta.get("version")
        if self.segmentation is None:
            return f"detector {det}, malignancy {mal}" if mal else f"detector {det}"
        seg = self.segmentation_meta.get("version", "unknown")
        return (f"det {det}, mal {mal}, seg {seg}" if mal else f"det {det}, seg {seg}")[:40]


def load_models(device: str | None = None, threads: int | None = None, *,
                weights_dir: Path | None = None, threshold: float | None = None,
                detector_path: Path | None = None, malignancy_path: Path | None = None,
                segmentation_path: Path | None = None) -> Models:
    """Load the shipped (or given) weights once. ``device`` defaults to CUDA when available;
    ``threads`` sets torch's CPU threads (default: all cores)."""
    import torch

    from lungcad_inference.networks import MalignancyNet, NoduleDetector, NoduleSegNet
    from lungcad_inference.training.device import resolve_device

    if threads:
        torch.set_num_threads(int(threads))
    dev = torch.device(device or resolve_device("auto"))  # any torch name, e.g. "cuda:1"
    root = weights_dir or WEIGHTS_DIR
    det, det_meta = load_network(detector_path or root / f"{DETECTOR}.pt", NoduleDetector, dev)
    mal_path = malignancy_path or root / f"{MALIGNANCY}.pt"
    mal, mal_meta = (load_network(mal_path, MalignancyNet, dev) if mal_path.exists()
                     else (None, {}))
    seg_path = segmentation_path or root / f"{SEGMENTATION}.pt"
    seg, seg_meta = (load_network(seg_path, NoduleSegNet, dev) if seg_path.exists()
                     else (None, {}))
    thr = threshold if threshold is not None else float(det_meta.get("operating_threshold", 0.5))
    log.info("models loaded", extra={"device": str(dev), "threshold": thr,
                                     "segmentation": seg is not None,
                                     "threads": torch.get_num_threads()})
    return Models(det, mal, dev, thr, det_meta, mal_meta, segmentation=seg,
                  segmentation_meta=seg_meta)


def run_detector(models: Models, hu_zyx: np.ndarray) -> np.ndarray:
    """Raw detector output ``(5, z/4, y/4, x/4)`` for a whole volume in one pass."""
    import torch

    from lungcad_inference.networks import NoduleDetector

    m = NoduleDetector.MULTIPLE
    pad = [(0, (-n) % m) for n in hu_zyx.shape]
    x = np.pad(normalise_hu(hu_zyx, HU_WINDOW), pad, constant_values=-1.0)
    with torch.inference_mode():
        t = torch.from_numpy(x)[None, None].to(models.device)
        if models.device.type == "cpu":
            t = t.contiguous(memory_format=torch.channels_last_3d)
        out = models.detector(t)[0].float().cpu().numpy()
    return out


def with_coarse_pass(models: Models, hu_zyx: np.ndarray, lungs_zyx: np.ndarray,
                     fine: list[Any], threshold: float) -> list[Any]:
    """``fine`` candidates plus those of the detector run on the volume halved to 2 mm
    (:mod:`lungcad_inference.multiscale`: masses too large for the 1 mm pass), at most
    ``models.max_candidates``, highest score first."""
    from lungcad_inference.multiscale import coarse_candidates, halve, merge

    half_out = run_detector(models, np.rint(halve(hu_zyx)).astype(np.int16))
    lungs_half = halve(lungs_zyx, "max")
    coarse = coarse_candidates(decode(half_out, 4, None, threshold=threshold,
                                      max_candidates=models.max_candidates), lungs_half,
                               min_diameter_mm=float(models.coarse_min_mm or 0.0))
    return merge(fine, coarse)[:models.max_candidates]


def crop_cube(volume: np.ndarray, centre_zyx: Any, size: int, fill: float) -> np.ndarray:
    """A ``size^3`` cube of ``volume`` centred on the voxel nearest ``centre_zyx``."""
    from lungcad_inference.segmentation import crop_at

    return crop_at(volume, centre_zyx, size, fill)[0]


def outline_cube(outline: tuple[np.ndarray, np.ndarray], centre_zyx: Any, size: int
                 ) -> np.ndarray:
    """A learned outline ``(mask, start)`` (volume index of the mask's voxel 0) on the
    ``size^3`` cube that :func:`crop_cube` cuts at ``centre_zyx``."""
    mask, start = outline
    origin = np.rint(np.asarray(centre_zyx, float)).astype(int) - size // 2
    out = np.zeros((size,) * 3, bool)
    rel = np.asarray(start) - origin  # the mask's voxel 0 in cube indices
    lo = np.maximum(rel, 0)
    hi = np.minimum(rel + np.array(mask.shape), size)
    if np.all(hi > lo):
        out[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = mask[
            tuple(slice(a - r, b - r) for a, b, r in zip(lo, hi, rel, strict=True))]
    return out


def malignancy_input(cube_hu: np.ndarray, box_mask: np.ndarray | None = None,
                     seg: np.ndarray | None = None, diameter_mm: float | None = None
                     ) -> tuple[np.ndarray, float]:
    """The malignancy network's image input and the nodule's segmented diameter.

    ``cube_hu``: a ``32^3`` 1 mm HU cube centred on the nodule. ``seg``: the nodule's learned
    outline on that cube (without it, a -600 HU threshold segmentation); ``diameter_mm``: its
    volume-equivalent diameter when the outline is larger than the cube. Voxels outside the
    outline's box (plus 4 mm) are set to air, so training crops (tight VOIs, where
    ``box_mask`` marks the VOI's extent) and serving crops (full context) look alike.
    """
    if seg is None or not seg.any():
        seg = segment_nodule(cube_hu)
        diameter_mm = None
    keep = np.zeros(cube_hu.shape, bool)
    if seg.any():
        nz = np.argwhere(seg)
        lo = np.maximum(nz.min(0) - BOX_MARGIN_MM, 0)
        hi = nz.max(0) + BOX_MARGIN_MM + 1
        keep[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = True
    else:
        c = cube_hu.shape[0] // 2
        keep[c - 6:c + 6, c - 6:c + 6, c - 6:c + 6] = True
    if box_mask is not None:
        keep &= box_mask
    image = np.where(keep, cube_hu, -1000.0).astype(np.float32)
    return normalise_hu(image, HU_WINDOW), (diameter_mm if diameter_mm is not None
                                            else equivalent_diameter_mm(seg))


def score_malignancy(models: Models, cubes: list[np.ndarray],
                     outlines: list[tuple[np.ndarray, float] | None] | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Malignancy probabilities and segmented diameters for 1 mm HU cubes (``PATCH_MM^3``);
    ``outlines``: per cube, the learned outline on it and its full equivalent diameter."""
    import torch

    outlines = outlines or [None] * len(cubes)
    inputs = [malignancy_input(c, None, *(o if o is not None else (None, None)))
              for c, o in zip(cubes, outlines, strict=True)]
    diam = np.array([d for _, d in inputs], np.float32)
    if models.malignancy is None or not cubes:
        return np.full(len(cubes), np.nan), diam
    x = torch.from_numpy(np.stack([i for i, _ in inputs])[:, None]).to(models.device)
    f = torch.from_numpy(np.stack([size_features(d) for d in diam])).to(models.device)
    with torch.inference_mode():
        p = torch.sigmoid(models.malignancy(x, f)[:, 0]).float().cpu().numpy()
    return p, diam


def detect(models: Models, hu_zyx: np.ndarray, lungs_zyx: np.ndarray, geometry: Any, *,
           threshold: float | None = None) -> list[Candidate]:
    """Nodule candidates in a preprocessed study, highest nodule probability first.

    Args:
        models: from :func:`load_models`.
        hu_zyx: int16 HU ``(z, y, x)`` on ``geometry`` (1 mm isotropic).
        lungs_zyx: uint8 lung labels ``(z, y, x)`` on the same grid (0 outside the lungs).
        geometry: :class:`lungcad.imaging.Geometry` of the arrays (maps voxels to LPS mm).
        threshold: nodule-probability operating point (default ``models.threshold``).
    """
    if hu_zyx.shape != lungs_zyx.shape or tuple(hu_zyx.shape) != tuple(geometry.shape):
        raise ValueError(f"hu {hu_zyx.shape}, lungs {lungs_zyx.shape} and geometry "
                         f"{geometry.shape} must match")
    if not np.allclose(geometry.spacing, 1.0, atol=1e-3):
        raise ValueError(f"detect() needs the 1 mm grid, got spacing {geometry.spacing}")
    out = run_detector(models, hu_zyx)
    thr = models.threshold if threshold is None else threshold
    raw = decode(out, 4, lungs_zyx, threshold=thr, max_candidates=models.max_candidates)
    if models.coarse_min_mm is not None:
        raw = with_coarse_pass(models, hu_zyx, lungs_zyx, raw, thr)
    cubes = [crop_cube(hu_zyx, r.centre_zyx, PATCH_MM, -1000.0) for r in raw]
    segment = models.segmenter()
    learned: list[Any] = [None] * len(raw)
    if segment is not None and raw:
        learned = segment(hu_zyx, [r.centre_zyx for r in raw], [r.diameter_mm for r in raw])
    # the malignancy model sees the size it was trained with: learned outlines only when its
    # sidecar says so (older weights were trained on the threshold segmentation)
    sized = models.malignancy_meta.get("size_source", "").startswith("learned")
    on_cubes = [None if o is None or not sized else (outline_cube(o, r.centre_zyx, PATCH_MM),
                                                     equivalent_diameter_mm(o[0]))
                for r, o in zip(raw, learned, strict=True)]
    probs, seg_d = score_malignancy(models, cubes, on_cubes)
    result = []
    for r, p, d, o in zip(raw, probs, seg_d, learned, strict=True):
        mm = geometry.index_to_world(r.centre_zyx)
        result.append(Candidate(tuple(float(v) for v in r.centre_zyx),
                                tuple(float(v) for v in mm), r.diameter_mm, r.score,
                                None if np.isnan(p) else float(p), float(d), o))
    return result


def default_threads() -> int:
    return os.cpu_count() or 1
