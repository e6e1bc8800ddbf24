"""Learned nodule outlines: the network input at a seed point, and the mask from its output.

Pure functions on 1 mm isotropic HU arrays ``(z, y, x)`` (the preprocessed grid, or a VOI
resampled to it). Training (``training.segmentation_data``), ``lungcad evaluate segmentation``
and serving (``clinical.measure``) all build the input with :func:`seg_input` and read the
result with :func:`nodule_from_probability`, so they cannot drift.

The network sees a cube centred on the seed voxel: 32 mm for nodules up to 13 mm, larger for
larger ones (:func:`cube_size`), with a Gaussian seed channel at its centre that says which
object to outline.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage

from lungcad_inference.intensity import HU_WINDOW, normalise_hu

SEED_SIGMA_MM = 3.0
BASE_CUBE_MM = 32
MAX_CUBE_MM = 96
PROBABILITY_THRESHOLD = 0.5
GROWTH = 1.25  # a mask this much larger than its cube was sized for: segment again, wider
MAX_ROUNDS = 3
FULL = np.ones((3, 3, 3), bool)


def cube_size(diameter_mm: float, base: int = BASE_CUBE_MM, largest: int = MAX_CUBE_MM) -> int:
    """Cube edge (mm = voxels) for a nodule of about ``diameter_mm``: at least ``base``, room
    for 1.2 times the nodule and 8 mm of context on each side, a multiple of 8, at most
    ``largest``."""
    need = int(math.ceil((float(diameter_mm) * 1.2 + 16) / 8.0) * 8)
    return int(min(max(base, need), largest))


def seed_channel(size: int, sigma_mm: float = SEED_SIGMA_MM) -> np.ndarray:
    """A Gaussian (peak 1) at voxel ``size // 2`` of a ``size^3`` cube, float32."""
    r = np.arange(size, dtype=np.float32) - size // 2
    g = np.exp(-(r**2) / (2 * sigma_mm**2))
    return (g[:, None, None] * g[None, :, None] * g[None, None, :]).astype(np.float32)


def seg_input(cube_hu: np.ndarray) -> np.ndarray:
    """``(2, s, s, s)`` float32: windowed HU and the seed channel, for a cube whose voxel
    ``s // 2`` is the seed."""
    size = cube_hu.shape[0]
    return np.stack([normalise_hu(cube_hu, HU_WINDOW), seed_channel(size)])


def crop_at(volume: np.ndarray, seed_zyx: Any, size: int, fill: float
            ) -> tuple[np.ndarray, np.ndarray]:
    """``(cube, start)``: the ``size^3`` cube of ``volume`` whose voxel ``size // 2`` is the
    voxel nearest ``seed_zyx``, filled with ``fill`` outside the volume; ``start`` is the
    volume index of the cube's voxel 0."""
    start = np.rint(np.asarray(seed_zyx, float)).astype(int) - size // 2
    out = np.full((size,) * 3, fill, np.float32)
    lo = np.maximum(start, 0)
    hi = np.minimum(start + size, volume.shape)
    if np.all(hi > lo):
        out[tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start, strict=True))] = \
            volume[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
    return out, start


def nodule_from_probability(prob: np.ndarray, seed_zyx: Any,
                            threshold: float = PROBABILITY_THRESHOLD) -> np.ndarray:
    """The connected component of ``prob >= threshold`` at the seed (or, when the seed voxel
    is outside it, the component nearest the seed within 3 voxels), holes filled."""
    fg = prob >= threshold
    labels, count = ndimage.label(fg, structure=FULL)
    if count == 0:
        return fg
    s = np.clip(np.rint(np.asarray(seed_zyx, float)).astype(int), 0, np.array(prob.shape) - 1)
    keep = int(labels[tuple(s)])
    if keep == 0:
        window = tuple(slice(max(int(c) - 3, 0), int(c) + 4) for c in s)
        near = labels[window]
        near = near[near > 0]
        if near.size == 0:
            return np.zeros_like(fg)
        keep = int(np.bincount(near).argmax())
    return ndimage.binary_fill_holes(labels == keep)


def predict_probabilities(model: Any, cubes: list[np.ndarray], device: Any = "cpu",
                          batch: int = 8) -> list[np.ndarray]:
    """Probability cubes for HU cubes (each ``s^3`` with the seed at ``s // 2``); cubes of one
    size run as one batch."""
    import torch

    out: list[np.ndarray | None] = [None] * len(cubes)
    by_size: dict[int, list[int]] = {}
    for i, c in enumerate(cubes):
        by_size.setdefault(c.shape[0], []).append(i)
    with torch.inference_mode():
        for idx in by_size.values():
            for k in range(0, len(idx), batch):
                part = idx[k:k + batch]
                x = torch.from_numpy(np.stack([seg_input(cubes[i]) for i in part])).to(device)
                p = torch.sigmoid(model(x)[:, 0]).float().cpu().numpy()
                for j, i in enumerate(part):
                    out[i] = p[j]
    return [o for o in out if o is not None]


def segment_probabilities(model: Any, hu_zyx: np.ndarray, seeds_zyx: list[Any],
                          diameters_mm: list[float], device: Any = "cpu"
                          ) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each seed (voxel ``(z, y, x)`` on the 1 mm grid of ``hu_zyx``): ``(probability
    cube, start)``, ``start`` the volume index of the cube's voxel 0. The cube's size follows
    ``diameters_mm`` (an estimate, e.g. the detector's); when the nodule at probability 0.5
    comes out larger than that cube was sized for (``GROWTH`` times its extent needs a larger
    cube), or reaches the cube's faces, it is segmented again in a larger cube (at most
    ``MAX_ROUNDS`` more passes, up to 96 mm). The cube choice does not depend on the final
    threshold, so one pass serves every threshold."""
    sizes = [cube_size(d) for d in diameters_mm]
    result: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(sizes)
    todo = list(range(len(sizes)))
    rounds = 0
    while todo:
        crops = [crop_at(hu_zyx, seeds_zyx[i], sizes[i], -1000.0) for i in todo]
        probs = predict_probabilities(model, [c for c, _ in crops], device)
        again = []
        for i, (_, start), p in zip(todo, crops, probs, strict=True):
            result[i] = (p, start)
            mask = nodule_from_probability(p, np.asarray(seeds_zyx[i], float) - start)
            wanted = cube_size(GROWTH * extent_mm(mask))
            if touches_border(mask):
                wanted = max(wanted, sizes[i] * 2)  # cut off by the cube: look much wider
            if wanted > sizes[i] and sizes[i] < MAX_CUBE_MM and rounds < MAX_ROUNDS:
                sizes[i] = min(MAX_CUBE_MM, wanted)  # the nodule is larger: look wider
                again.append(i)
        todo = again
        rounds += 1
    return [r for r in result if r is not None]


def segment_at(model: Any, hu_zyx: np.ndarray, seeds_zyx: list[Any],
               diameters_mm: list[float], device: Any = "cpu",
               threshold: float = PROBABILITY_THRESHOLD
               ) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each seed: ``(mask, start)``, the nodule's boolean mask (the component at the seed
    of ``probability >= threshold``, holes filled) on the cube of
    :func:`segment_probabilities` starting at volume index ``start``. ``threshold``: the
    weights' calibrated one where their sidecar carries it."""
    return [(nodule_from_probability(p, np.asarray(seed, float) - start, threshold), start)
            for (p, start), seed in zip(segment_probabilities(model, hu_zyx, seeds_zyx,
                                                              diameters_mm, device),
                                        seeds_zyx, strict=True)]


def extent_mm(mask: np.ndarray) -> float:
    """The mask's largest bounding-box side (1 mm voxels)."""
    if not mask.any():
        return 0.0
    nz = np.argwhere(mask)
    return float((nz.max(0) - nz.min(0) + 1).max())


def touches_border(mask: np.ndarray) -> bool:
    """Whether a mask reaches any face of its cube (the nodule may extend beyond it)."""
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()
                or mask[:, :, 0].any() or mask[:, :, -1].any())
