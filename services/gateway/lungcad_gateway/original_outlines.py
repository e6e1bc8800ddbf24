"""The findings' outlines on the original series' native images, read from the job's DICOM SEG.

Each finding's segment frames (read by :mod:`lungcad_gateway.seg_frames`) are placed on the
viewer's stack by their source image reference (the images of the original series document, in
InstanceNumber order: :mod:`lungcad_gateway.original_series`).

An outline is sent as a run-length mask in native pixel coordinates: per image, runs
``[row, first column, length]`` (rows and columns 0-based, as in the pixel stack ``(n, rows,
columns)``); the viewer traces its contour along the pixel edges.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from lungcad.findings import NOTICE
from lungcad_gateway.seg_frames import SEG_ARTIFACT, finding_masks, segment_findings


class OutlineImage(BaseModel):
    index: int = Field(description="0-based index in the pixel stack (InstanceNumber order)")
    instance_number: int | None
    sop_instance_uid: str
    pixels: int = Field(description="Pixels of the mask on this image")
    runs: list[list[int]] = Field(description="[row, first column, length] per run, 0-based "
                                              "native pixel coordinates")


class FindingOutline(BaseModel):
    finding_id: str
    segment_number: int | None = Field(None, description="Its segment in the SEG; null when it "
                                                         "has none (the viewer draws a circle)")
    images: list[OutlineImage] = Field(default_factory=list,
                                       description="The images its mask crosses, in stack order")


class OriginalOutlines(BaseModel):
    notice: str = NOTICE
    source: str | None = Field(None, description="The artifact the outlines come from "
                                                 "(seg.dcm); null when the job has none")
    rows: int
    columns: int
    findings: list[FindingOutline]


def mask_runs(mask: np.ndarray) -> list[list[int]]:
    """Runs ``[row, first column, length]`` of a bool ``(rows, columns)`` mask, row by row."""
    padded = np.zeros((mask.shape[0], mask.shape[1] + 2), np.int8)
    padded[:, 1:-1] = mask
    rows, cols = np.nonzero(np.diff(padded, axis=1))
    # per row the changes alternate: +1 at a run's start, -1 one past its end
    return [[int(r), int(c0), int(c1 - c0)]
            for r, c0, c1 in zip(rows[::2], cols[::2], cols[1::2], strict=True)]


def outlines(series: dict[str, Any], seg: Any | None, finding_ids: list[str]
             ) -> OriginalOutlines:
    """Each finding's outline on the native images of the analysed series.

    ``series``: the original series document (``OriginalSeries`` as a dict: rows, columns
    and the images in stack order). ``seg``: the job's SEG (None when it has none). A finding
    without a segment gets no images. Raises 409 ``outlines_not_on_series`` when the SEG's
    frames are of another size or name images outside the series.
    """
    rows, columns = int(series["rows"]), int(series["columns"])
    if seg is None:
        return OriginalOutlines(rows=rows, columns=columns,
                                findings=[FindingOutline(finding_id=f) for f in finding_ids])
    order = series["images"]
    place = {(i["sop_instance_uid"], i.get("frame_number")): k for k, i in enumerate(order)}
    by_segment = segment_findings(seg)
    images = finding_masks(seg, place, (rows, columns))
    numbers = {v: k for k, v in by_segment.items()}
    result = []
    for fid in finding_ids:
        drawn = images.get(fid, {})
        result.append(FindingOutline(
            finding_id=fid, segment_number=numbers.get(fid) if drawn else None,
            images=[OutlineImage(index=k, instance_number=order[k]["instance_number"],
                                 sop_instance_uid=order[k]["sop_instance_uid"],
                                 pixels=int(drawn[k].sum()), runs=mask_runs(drawn[k]))
                    for k in sorted(drawn)]))
    return OriginalOutlines(source=SEG_ARTIFACT, rows=rows, columns=columns, findings=result)
