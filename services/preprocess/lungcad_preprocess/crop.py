"""Crop box: the lung bounding box plus a margin, on the canonical full-resolution grid."""

from __future__ import annotations

import numpy as np

from lungcad.errors import ProcessingError
from lungcad.imaging import Geometry


def lung_crop_box(labels: np.ndarray, label_grid: Geometry, target: Geometry,
                  margin_mm: float) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """``(start, stop)`` ``(z, y, x)`` indices on ``target`` of the lungs in ``labels``.

    ``labels`` is ``(z, y, x)`` on ``label_grid``; both grids must share their direction. The
    box covers every labelled voxel (its full extent) plus ``margin_mm``, clipped to ``target``.
    """
    idx = [np.nonzero(labels.any(axis=ax))[0] for ax in ((1, 2), (0, 2), (0, 1))]
    if any(a.size == 0 for a in idx):
        raise ProcessingError("The lung mask is empty.", code="no_lungs_found")
    half = np.asarray(label_grid.spacing) / 2.0
    lo_idx = np.asarray([a[0] for a in idx], float)
    hi_idx = np.asarray([a[-1] for a in idx], float)
    lo_world = label_grid.index_to_world(lo_idx)
    hi_world = label_grid.index_to_world(hi_idx)
    lo_t = target.world_to_index(lo_world) - (half + margin_mm) / np.asarray(target.spacing)
    hi_t = target.world_to_index(hi_world) + (half + margin_mm) / np.asarray(target.spacing)
    start = np.clip(np.floor(np.minimum(lo_t, hi_t)), 0, None).astype(int)
    stop = np.minimum(np.ceil(np.maximum(lo_t, hi_t)).astype(int) + 1, target.shape)
    return tuple(int(v) for v in start), tuple(int(v) for v in stop)
