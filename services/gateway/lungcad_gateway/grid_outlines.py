"""The findings' outlines on the viewer's 1 mm grid, mapped from the job's DICOM SEG.

The SEG holds each finding's mask on the native pixels of the analysed series (read by
:mod:`lungcad_gateway.seg_frames`); its frames are placed on the series' slices by their source
image reference, using the ``SliceTable`` preprocessing kept in ``preprocess.json``
(SOPInstanceUID, frame, ImagePositionPatient, orientation, pixel spacing), so no DICOM image is
decoded. The viewer grid is the preprocessed volume's ``Geometry`` (``(z, y, x)``, LPS).

Sampling: for each voxel of the finding's box on the grid, the SEG value of the nearest native
pixel: the voxel centre (LPS mm) goes to the slice whose plane is nearest along the slice
normal, then to the nearest row and column on it (rounded). A voxel further than half a slice
gap beyond the first or last slice, or off the image, is outside. The box is the grid
bounding box of the mask's native pixel centres, widened by half a native pixel or slice gap
(and one voxel), clipped to the grid.

A mask is sent as its box ``[z0, y0, x0, z1, y1, x1]`` (start inclusive, stop exclusive,
voxel indices of the grid) and the run lengths of the box flattened in C order (z, then y,
then x fastest), alternating outside and inside and starting with outside (0 when the first
voxel is inside).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from lungcad.errors import Conflict
from lungcad.findings import NOTICE
from lungcad.imaging.geometry import Geometry
from lungcad.imaging.slices import SliceTable
from lungcad_gateway.seg_frames import SEG_ARTIFACT, finding_masks, segment_findings

SAMPLING = "nearest native pixel of each 1 mm voxel centre"


class GridOutline(BaseModel):
    finding_id: str
    segment_number: int | None = Field(None, description="Its segment in the SEG; null when it "
                                                         "has none (the viewer draws a circle)")
    box_zyx: list[int] | None = Field(None, description="[z0, y0, x0, z1, y1, x1]: start "
                                                        "inclusive, stop exclusive, grid voxels")
    voxels: int = Field(0, description="Voxels of the mask")
    runs: list[int] = Field(default_factory=list,
                            description="Run lengths of the box flattened in C order (z, y, x), "
                                        "alternating outside and inside, outside first")


class GridOutlines(BaseModel):
    notice: str = NOTICE
    source: str | None = Field(None, description="The artifact the outlines come from "
                                                 "(seg.dcm); null when the job has none")
    sampling: str = SAMPLING
    shape_zyx: list[int] = Field(description="The viewer grid's shape")
    findings: list[GridOutline]


def box_runs(mask: np.ndarray) -> list[int]:
    """Run lengths of a bool array flattened in C order, alternating outside and inside,
    outside first."""
    flat = mask.ravel().astype(np.int8)
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    lengths = np.diff(bounds).tolist()
    return [0, *lengths] if flat.size and flat[0] else lengths


def _pixel_world(table: SliceTable, k: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """LPS mm ``(n, 3)`` of pixel centres (row, column) on slice ``k``."""
    dr, dc = table.pixel_spacing
    return (np.asarray(table.positions[k], float)
            + cols[:, None] * dc * np.asarray(table.row_direction, float)
            + rows[:, None] * dr * np.asarray(table.column_direction, float))


def _box(frames: dict[int, np.ndarray], table: SliceTable, grid: Geometry, gap_mm: float
         ) -> tuple[np.ndarray, np.ndarray] | None:
    """The grid box (start, stop) ``(z, y, x)`` that holds every voxel nearer to a mask pixel
    than half a native pixel or slice gap; None when it misses the grid."""
    points = np.concatenate([_pixel_world(table, k, *np.nonzero(m)) for k, m in frames.items()])
    index = grid.world_to_index(points)
    reach_mm = max(*table.pixel_spacing, gap_mm) / 2
    pad = np.ceil(reach_mm / np.asarray(grid.spacing)) + 1
    start = np.maximum(np.floor(index.min(axis=0) - pad), 0).astype(int)
    stop = np.minimum(np.ceil(index.max(axis=0) + pad) + 1, grid.shape).astype(int)
    return (start, stop) if np.all(stop > start) else None


def grid_mask(frames: dict[int, np.ndarray], table: SliceTable, grid: Geometry
              ) -> tuple[np.ndarray, np.ndarray] | None:
    """A finding's mask on the grid from its native masks.

    ``frames``: slice index in ``table`` -> bool ``(rows, columns)``. Returns ``(start_zyx,
    mask)``, ``mask`` bool ``(dz, dy, dx)`` for the grid voxels ``start`` to ``start +
    mask.shape``, or None when its box misses the grid.
    """
    offsets = table.offsets_mm
    gap_mm = float(np.median(np.diff(offsets))) if len(offsets) > 1 else \
        float(table.slice_thickness_mm or 1.0)
    box = _box(frames, table, grid, gap_mm)
    if box is None:
        return None
    start, stop = box
    zz, yy, xx = np.meshgrid(*(np.arange(a, b) for a, b in zip(start, stop, strict=True)),
                             indexing="ij")
    world = grid.index_to_world(np.stack([zz, yy, xx], axis=-1).reshape(-1, 3))
    # the nearest slice along the normal
    depth = world @ table.normal
    after = np.clip(np.searchsorted(offsets, depth), 1, max(len(offsets) - 1, 1))
    before = after - 1
    k = np.where(np.abs(depth - offsets[before]) <= np.abs(depth - offsets[after]), before,
                 after) if len(offsets) > 1 else np.zeros(len(depth), int)
    near = np.abs(depth - offsets[k]) <= gap_mm / 2 + 1e-6
    # the nearest pixel on it
    rel = world - np.asarray(table.positions, float)[k]
    row = np.rint(rel @ np.asarray(table.column_direction, float) / table.pixel_spacing[0])
    col = np.rint(rel @ np.asarray(table.row_direction, float) / table.pixel_spacing[1])
    values = np.zeros(len(world), bool)
    for slice_k, mask in frames.items():
        rows, cols = mask.shape
        on = near & (k == slice_k) & (row >= 0) & (row < rows) & (col >= 0) & (col < cols)
        values[on] = mask[row[on].astype(int), col[on].astype(int)]
    return start, values.reshape(zz.shape)


def outlines(meta: dict[str, Any], table: SliceTable | None, seg: Any | None,
             finding_ids: list[str]) -> GridOutlines:
    """Each finding's mask on the viewer grid (``meta["geometry"]``).

    ``table``: the analysed series' slices (None for a volume upload); ``seg``: the job's SEG
    (None when it has none). A finding without a segment, or whose mask misses the grid, gets
    no box. Raises 409 ``outlines_not_on_series`` when a SEG cannot be placed on the slices.
    """
    grid = Geometry.from_dict(meta["geometry"])
    shape = list(grid.shape)
    if seg is None:
        return GridOutlines(shape_zyx=shape,
                            findings=[GridOutline(finding_id=f) for f in finding_ids])
    if table is None:
        raise Conflict("The job has a SEG but the analysed series' slices are not recorded, so "
                       "its frames cannot be placed on the 1 mm grid.",
                       code="outlines_not_on_series")
    place = {(uid, frame): k for k, (uid, frame) in
             enumerate(zip(table.sop_instance_uids, table.frame_numbers, strict=True))}
    masks = finding_masks(seg, place)  # the slice table does not record the images' size
    numbers = {v: k for k, v in segment_findings(seg).items()}
    result = []
    for fid in finding_ids:
        mapped = grid_mask(masks[fid], table, grid) if fid in masks else None
        if mapped is None or not mapped[1].any():
            result.append(GridOutline(finding_id=fid))
            continue
        start, mask = mapped
        result.append(GridOutline(
            finding_id=fid, segment_number=numbers.get(fid),
            box_zyx=[*map(int, start), *map(int, start + np.asarray(mask.shape))],
            voxels=int(mask.sum()), runs=box_runs(mask)))
    return GridOutlines(source=SEG_ARTIFACT, shape_zyx=shape, findings=result)
