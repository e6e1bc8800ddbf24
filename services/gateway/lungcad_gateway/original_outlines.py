"""The findings' outlines on the original series' native images, read from the job's DICOM SEG.

The inference stage writes each finding's learned segmentation into ``seg.dcm``: one binary
segment per finding (TrackingID = the finding's id), one frame per (segment, source image)
that the mask crosses, sampled at the native pixels of the analysed series (see
``lungcad_inference.reports.source.labels_on_slices``). Each frame names its source image
(SOPInstanceUID, and the frame for a multi-frame object) in its DerivationImageSequence; that
reference places it on the viewer's stack (the images of the original series document, in
InstanceNumber order: :mod:`lungcad_gateway.original_series`).

An outline is sent as a run-length mask in native pixel coordinates: per image, runs
``[row, first column, length]`` (rows and columns 0-based, as in the pixel stack ``(n, rows,
columns)``); the viewer traces its contour along the pixel edges. Only pydicom and numpy are
used (no highdicom in the gateway).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from lungcad.errors import Conflict
from lungcad.findings import NOTICE

SEG_ARTIFACT = "seg.dcm"


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


def _undecodable(why: str) -> Conflict:
    return Conflict(f"The job's DICOM SEG could not be read as nodule outlines ({why}).",
                    code="outlines_undecodable")


def read_seg(data: bytes) -> Any:
    """The stored SEG as a pydicom dataset; 409 ``outlines_undecodable`` when it is not one."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, ValueError, EOFError, OSError, KeyError, TypeError) as exc:
        raise _undecodable(f"{type(exc).__name__}: {str(exc)[:200]}") from exc
    if ds.get("Modality") != "SEG" or "SegmentSequence" not in ds:
        raise _undecodable("it is not a Segmentation object")
    return ds


def segment_findings(seg: Any) -> dict[int, str]:
    """Segment number -> finding id (the segment's TrackingID)."""
    return {int(s.SegmentNumber): str(s.TrackingID) for s in seg.SegmentSequence
            if s.get("TrackingID")}


def seg_frames(seg: Any) -> Iterator[tuple[int, str, int | None, np.ndarray]]:
    """(segment number, source SOPInstanceUID, source frame or None, bool mask ``(rows,
    columns)``) per frame of a binary SEG."""
    try:
        masks = np.asarray(seg.pixel_array)
    except (NotImplementedError, RuntimeError, ValueError, AttributeError) as exc:
        raise _undecodable(f"{type(exc).__name__}: {str(exc)[:200]}") from exc
    if masks.ndim == 2:
        masks = masks[None]
    shared = seg.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in seg \
        else {}
    frames = seg.get("PerFrameFunctionalGroupsSequence", [])
    if len(frames) != len(masks):
        raise _undecodable(f"{len(masks)} frames but {len(frames)} frame descriptions")
    for mask, frame in zip(masks, frames, strict=True):
        ident = (frame.get("SegmentIdentificationSequence")
                 or shared.get("SegmentIdentificationSequence"))
        derivation = (frame.get("DerivationImageSequence")
                      or shared.get("DerivationImageSequence"))
        if not ident or not derivation or not derivation[0].get("SourceImageSequence"):
            raise _undecodable("a frame names no segment or no source image")
        source = derivation[0].SourceImageSequence[0]
        number = source.get("ReferencedFrameNumber")
        yield (int(ident[0].ReferencedSegmentNumber), str(source.ReferencedSOPInstanceUID),
               int(number) if number is not None else None, mask.astype(bool))


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
    if (int(seg.Rows), int(seg.Columns)) != (rows, columns):
        raise Conflict(f"The SEG's frames are {seg.Rows} x {seg.Columns} pixels, the series' "
                       f"images {rows} x {columns}.", code="outlines_not_on_series")
    order = series["images"]
    place = {(i["sop_instance_uid"], i.get("frame_number")): k for k, i in enumerate(order)}
    by_segment = segment_findings(seg)
    images: dict[str, dict[int, np.ndarray]] = {}
    for segment, uid, frame, mask in seg_frames(seg):
        k = place.get((uid, frame))
        if k is None and frame == 1:  # a single-frame image referenced as its frame 1
            k = place.get((uid, None))
        if k is None:
            raise Conflict(f"A frame of the SEG's segment {segment} lies on an image that is not "
                           "in the analysed series.", code="outlines_not_on_series")
        finding = by_segment.get(segment)
        if finding is not None and mask.any():
            found = images.setdefault(finding, {})
            found[k] = found[k] | mask if k in found else mask
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
