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


def _slice_crops(box: tuple[slice, ...], grid: Geometry, slices: SliceTable, rows: int,
                 cols: int) -> list[tuple[int, slice, slice]]:
    """The original slices, and the pixel window on each, that can see a voxel of ``box`` (a
    bounding box on ``grid``): its corners, one voxel further out, projected onto the slices.
    Every pixel whose nearest voxel lies in ``box`` is inside them."""
    corners = grid.index_to_world(np.array([[a, b, c] for a in (box[0].start - 1, box[0].stop)
                                            for b in (box[1].start - 1, box[1].stop)
                                            for c in (box[2].start - 1, box[2].stop)], float))
    depth = corners @ slices.normal
    offsets = slices.offsets_mm
    crops = []
    for k in np.nonzero((offsets >= depth.min() - 1) & (offsets <= depth.max() + 1))[0]:
        rel = corners - np.asarray(slices.positions[k], float)
        r_idx = rel @ np.asarray(slices.column_direction) / slices.pixel_spacing[0]
        c_idx = rel @ np.asarray(slices.row_direction) / slices.pixel_spacing[1]
        r0, r1 = int(max(np.floor(r_idx.min()) - 1, 0)), int(min(np.ceil(r_idx.max()) + 2, rows))
        c0, c1 = int(max(np.floor(c_idx.min()) - 1, 0)), int(min(np.ceil(c_idx.max()) + 2, cols))
        if r0 < r1 and c0 < c1:
            crops.append((int(k), slice(r0, r1), slice(c0, c1)))
    return crops


def labels_on_slices(labels: np.ndarray, grid: Geometry, slices: SliceTable, rows: int,
                     cols: int, ids: Iterable[int]) -> tuple[list[int], np.ndarray]:
    """Sample a label volume on the preprocessed grid at the original pixels (nearest).

    Returns ``(slice indices, frames)``: the original slices that any label in ``ids`` crosses,
    and their ``(n, rows, cols)`` uint16 label map, ``j + 1`` where the pixel's nearest voxel
    holds ``ids[j]``, else 0. Each label is sampled only on the slices and in the pixel window
    its own bounding box reaches (time and memory are bounded by the nodules, not by the series
    or by how far apart the nodules are)."""
    ids = list(ids)
    frames: dict[int, np.ndarray] = {}
    boxes = ndimage.find_objects(labels) if ids and labels.any() else []
    for channel, label in enumerate(ids):
        box = boxes[label - 1] if 0 < label <= len(boxes) else None
        if box is None:
            continue
        for k, rs, cs in _slice_crops(box, grid, slices, rows, cols):
            rr, cc = np.meshgrid(np.arange(rs.start, rs.stop), np.arange(cs.start, cs.stop),
                                 indexing="ij")
            index = grid.world_to_index(pixel_world(slices, k, rr, cc))
            sampled = ndimage.map_coordinates(labels, index.reshape(-1, 3).T, order=0, cval=0)
            hit = sampled.reshape(rr.shape) == label
            if hit.any():
                frame = frames.setdefault(k, np.zeros((rows, cols), np.uint16))
                frame[rs, cs][hit] = channel + 1
    used = sorted(frames)
    if not used:
        return [], np.zeros((0, rows, cols), np.uint16)
    return used, np.stack([frames[k] for k in used])
