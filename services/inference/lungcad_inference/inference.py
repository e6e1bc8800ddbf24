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
``max_candidates``; each is then scored by the malignancy network on a 32 mm cube around it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lungcad_inference.decode import decode
from lungcad_inference.intensity import HU_WINDOW, normalise_hu
from lungcad_inference.nodule_size import equivalent_diameter_mm, segment_nodule, size_features
from lungcad_inference.weights import DETECTOR, MALIGNANCY, WEIGHTS_DIR, load_network

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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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

    @property
    def name(self) -> str:
        return "lungcad-detector+malignancy" if self.malignancy is not None else \
            "lungcad-detector"

    @property
    def version(self) -> str:
        det = self.detector_meta.get("version", "unknown")
        mal = self.malignancy_meta.get("version")
        return f"detector {det}, malignancy {mal}" if mal else f"detector {det}"


def load_models(device: str | None = None, threads: int | None = None, *,
                weights_dir: Path | None = None, threshold: float | None = None,
                detector_path: Path | None = None, malignancy_path: Path | None = None
                ) -> Models:
    """Load the shipped (or given) weights once. ``device`` defaults to CUDA when available;
    ``threads`` sets torch's CPU threads (default: all cores)."""
    import torch

    from lungcad_inference.networks import MalignancyNet, NoduleDetector
    from lungcad_inference.training.device import resolve_device

    if threads:
        torch.set_num_threads(int(threads))
    dev = torch.device(device or resolve_device("auto"))  # any torch name, e.g. "cuda:1"
    root = weights_dir or WEIGHTS_DIR
    det, det_meta = load_network(detector_path or root / f"{DETECTOR}.pt", NoduleDetector, dev)
    if dev.type == "cpu":
        det = det.to(memory_format=torch.channels_last_3d)
    mal_path = malignancy_path or root / f"{MALIGNANCY}.pt"
    mal, mal_meta = (load_network(mal_path, MalignancyNet, dev) if mal_path.exists()
                     else (None, {}))
    thr = threshold if threshold is not None else float(det_meta.get("operating_threshold", 0.5))
    log.info("models loaded", extra={"device": str(dev), "threshold": thr,
                                     "threads": torch.get_num_threads()})
    return Models(det, mal, dev, thr, det_meta, mal_meta)


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


def crop_cube(volume: np.ndarray, centre_zyx: Any, size: int, fill: float) -> np.ndarray:
    """A ``size^3`` cube of ``volume`` centred on the voxel nearest ``centre_zyx``."""
    start = np.rint(np.asarray(centre_zyx, float)).astype(int) - size // 2
    out = np.full((size,) * 3, fill, np.float32)
    lo = np.maximum(start, 0)
    hi = np.minimum(start + size, volume.shape)
    if np.all(hi > lo):
        out[tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start, strict=True))] = \
            volume[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
    return out


def malignancy_input(cube_hu: np.ndarray, box_mask: np.ndarray | None = None
                     ) -> tuple[np.ndarray, float]:
    """The malignancy network's image input and the nodule's segmented diameter.

    ``cube_hu``: a ``32^3`` 1 mm HU cube centred on the nodule. Voxels outside the nodule's own
    segmentation box (plus 4 mm) are set to air, so training crops (tight VOIs, where
    ``box_mask`` marks the VOI's extent) and serving crops (full context) look alike.
    """
    seg = segment_nodule(cube_hu)
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
    return normalise_hu(image, HU_WINDOW), equivalent_diameter_mm(seg)


def score_malignancy(models: Models, cubes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Malignancy probabilities and segmented diameters for 1 mm HU cubes (``PATCH_MM^3``)."""
    import torch

    inputs = [malignancy_input(c) for c in cubes]
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
    cubes = [crop_cube(hu_zyx, r.centre_zyx, PATCH_MM, -1000.0) for r in raw]
    probs, seg_d = score_malignancy(models, cubes)
    result = []
    for r, p, d in zip(raw, probs, seg_d, strict=True):
        mm = geometry.index_to_world(r.centre_zyx)
        result.append(Candidate(tuple(float(v) for v in r.centre_zyx),
                                tuple(float(v) for v in mm), r.diameter_mm, r.score,
                                None if np.isnan(p) else float(p), float(d)))
    return result


def default_threads() -> int:
    return os.cpu_count() or 1
