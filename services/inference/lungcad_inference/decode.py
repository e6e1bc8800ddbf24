"""Detector output -> candidate list: heatmap peaks (3-D max-pool NMS), lung restriction and
distance-based suppression. Everything is ``(z, y, x)`` on the preprocessed 1 mm grid."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class RawCandidate:
    centre_zyx: np.ndarray  # continuous voxel on the input grid
    diameter_mm: float
    score: float


def overlaps(a: RawCandidate, b: RawCandidate) -> bool:
    """Two candidates of one lesion: centres closer than the larger radius."""
    return bool(np.linalg.norm(np.asarray(a.centre_zyx) - np.asarray(b.centre_zyx))
                < max(a.diameter_mm, b.diameter_mm) / 2)


def decode(out: np.ndarray, stride: int, lungs: np.ndarray | None, *, threshold: float,
           max_candidates: int = 50, lung_margin_mm: float = 8.0,
           spacing_mm: float = 1.0) -> list[RawCandidate]:
    """Peaks of ``sigmoid(out[0])`` above ``threshold``.

    Args:
        out: ``(5, gz, gy, gx)`` raw network output (heat logit, log diameter, offset zyx).
        stride: output stride; cell ``i`` is centred on input voxel ``stride * i``.
        lungs: ``(z, y, x)`` lung labels on the input grid; candidates whose centre lies more
            than ``lung_margin_mm`` outside the lungs are dropped (``None``: keep all).
    """
    heat = 1.0 / (1.0 + np.exp(-out[0].astype(np.float64)))
    peaks = (heat == ndimage.maximum_filter(heat, size=3, mode="constant")) & (heat >= threshold)
    cells = np.argwhere(peaks)
    if lungs is not None and len(cells):
        near = lungs > 0
        if lung_margin_mm > 0:
            dist = ndimage.distance_transform_edt(~near[::stride, ::stride, ::stride])
            near_small = dist * stride * spacing_mm <= lung_margin_mm
        else:
            near_small = near[::stride, ::stride, ::stride]
        k = np.minimum(cells, np.asarray(near_small.shape) - 1)
        cells = cells[near_small[k[:, 0], k[:, 1], k[:, 2]]]
    scores = heat[tuple(cells.T)] if len(cells) else np.zeros(0)
    order = np.argsort(-scores)
    kept: list[RawCandidate] = []
    for i in order:
        c = cells[i]
        centre = (c + out[2:5, c[0], c[1], c[2]]) * stride
        diameter = float(np.exp(np.clip(out[1, c[0], c[1], c[2]], 0.0, 4.5)))
        cand = RawCandidate(centre.astype(float), diameter, float(scores[i]))
        if any(overlaps(cand, k) for k in kept):
            continue
        kept.append(cand)
        if len(kept) >= max_candidates:
            break
    return kept
