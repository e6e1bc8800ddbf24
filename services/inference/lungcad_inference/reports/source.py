"""The original DICOM series behind a job: its headers (for SR and SEG references) and masks
resampled onto its slices."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from scipy import ndimage

from lungcad.imaging import Geometry
from lungcad.imaging.slices import SliceTable


def load_series_headers(folder: Path, slices: SliceTable) -> list[pydicom.Dataset]:
    """Headers (no pixel data) of the series' slices, in the SliceTable's order."""
    wanted = {uid: k for k, uid in enumerate(slices.sop_instance_uids)}
    found: dict[int, pydicom.Dataset] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, EOFError):
            continue
        k = wanted.get(str(ds.get("SOPInstanceUID", "")))
        if k is not None:
            found[k] = ds
    missing = len(wanted) - len(found)
    if missing:
        raise FileNotFoundError(f"{missing} slices of the analysed series are missing")
    return [found[k] for k in range(len(wanted))]


def pixel_world(slices: SliceTable, k: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """LPS mm of pixel centres (row, column) on slice ``k``: ``(..., 3)``."""
    origin = np.asarray(slices.positions[k], float)
    row_dir = np.asarray(slices.row_direction, float)  # along a row: column index grows
    col_dir = np.asarray(slices.column_direction, float)  # down a column: row index grows
    dr, dc = slices.pixel_spacing
    return (origin + cols[..., None] * dc * row_dir + rows[..., None] * dr * col_dir)


def labels_on_slices(labels: np.ndarray, grid: Geometry, slices: SliceTable, rows: int,
                     cols: int, ids: Iterable[int]) -> tuple[list[int], np.ndarray]:
    """Sample a label volume on the preprocessed grid at the original pixels (nearest).

    Returns ``(slice indices, masks)``: the original slices that any label crosses, and their
    ``(n, rows, cols, n_ids)`` booleans, one channel per label id in ``ids``. Only slices and
    pixels near labelled voxels are computed (memory is bounded by the nodules, not the
    series)."""
    ids = list(ids)
    frames: dict[int, np.ndarray] = {}
    if not ids or not labels.any():
        return [], np.zeros((0, rows, cols, len(ids)), bool)
    nz = np.argwhere(labels > 0)
    corners = grid.index_to_world(np.array([[a, b, c] for a in (nz[:, 0].min() - 1,
                                                                nz[:, 0].max() + 1)
                                            for b in (nz[:, 1].min() - 1, nz[:, 1].max() + 1)
                                            for c in (nz[:, 2].min() - 1, nz[:, 2].max() + 1)]))
    normal = slices.normal
    offsets = slices.offsets_mm
    lo, hi = (corners @ normal).min(), (corners @ normal).max()
    for k in np.nonzero((offsets >= lo - 1) & (offsets <= hi + 1))[0]:
        origin = np.asarray(slices.positions[k], float)
        rel = corners - origin
        r_idx = rel @ np.asarray(slices.column_direction) / slices.pixel_spacing[0]
        c_idx = rel @ np.asarray(slices.row_direction) / slices.pixel_spacing[1]
        r0, r1 = int(max(np.floor(r_idx.min()) - 1, 0)), int(min(np.ceil(r_idx.max()) + 2, rows))
        c0, c1 = int(max(np.floor(c_idx.min()) - 1, 0)), int(min(np.ceil(c_idx.max()) + 2, cols))
        if r0 >= r1 or c0 >= c1:
            continue
        rr, cc = np.meshgrid(np.arange(r0, r1), np.arange(c0, c1), indexing="ij")
        index = grid.world_to_index(pixel_world(slices, int(k), rr, cc))
        sampled = ndimage.map_coordinates(labels, index.reshape(-1, 3).T, order=0, cval=0)
        sampled = sampled.reshape(rr.shape)
        if not sampled.any():
            continue
        frame = np.zeros((rows, cols, len(ids)), bool)
        for channel, label in enumerate(ids):
            frame[r0:r1, c0:c1, channel] = sampled == label
        frames[int(k)] = frame
    used = sorted(frames)
    if not used:
        return [], np.zeros((0, rows, cols, len(ids)), bool)
    return used, np.stack([frames[k] for k in used])
