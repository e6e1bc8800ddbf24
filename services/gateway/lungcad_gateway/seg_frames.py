"""The job's DICOM SEG read with pydicom: its segments (one per finding) and binary frames.

The inference stage writes each finding's learned segmentation into ``seg.dcm``: one binary
segment per finding (TrackingID = the finding's id), one frame per (segment, source image)
that the mask crosses, sampled at the native pixels of the analysed series (see
``lungcad_inference.reports.source.labels_on_slices``). Each frame names its source image
(SOPInstanceUID, and the frame for a multi-frame object) in its DerivationImageSequence; that
reference places it on the series. Only pydicom and numpy are used (no highdicom in the
gateway). Both outline answers (:mod:`lungcad_gateway.original_outlines` on the native images,
:mod:`lungcad_gateway.grid_outlines` on the 1 mm grid) read the SEG through this module.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from lungcad.errors import Conflict

SEG_ARTIFACT = "seg.dcm"
Place = Mapping[tuple[str, int | None], int]  # (SOPInstanceUID, frame or None) -> image index


def undecodable(why: str) -> Conflict:
    return Conflict(f"The job's DICOM SEG could not be read as nodule outlines ({why}).",
                    code="outlines_undecodable")


def read_seg(data: bytes) -> Any:
    """The stored SEG as a pydicom dataset; 409 ``outlines_undecodable`` when it is not one."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, ValueError, EOFError, OSError, KeyError, TypeError) as exc:
        raise undecodable(f"{type(exc).__name__}: {str(exc)[:200]}") from exc
    if ds.get("Modality") != "SEG" or "SegmentSequence" not in ds:
        raise undecodable("it is not a Segmentation object")
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
        raise undecodable(f"{type(exc).__name__}: {str(exc)[:200]}") from exc
    if masks.ndim == 2:
        masks = masks[None]
    shared = seg.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in seg \
        else {}
    frames = seg.get("PerFrameFunctionalGroupsSequence", [])
    if len(frames) != len(masks):
        raise undecodable(f"{len(masks)} frames but {len(frames)} frame descriptions")
    for mask, frame in zip(masks, frames, strict=True):
        ident = (frame.get("SegmentIdentificationSequence")
                 or shared.get("SegmentIdentificationSequence"))
        derivation = (frame.get("DerivationImageSequence")
                      or shared.get("DerivationImageSequence"))
        if not ident or not derivation or not derivation[0].get("SourceImageSequence"):
            raise undecodable("a frame names no segment or no source image")
        source = derivation[0].SourceImageSequence[0]
        number = source.get("ReferencedFrameNumber")
        yield (int(ident[0].ReferencedSegmentNumber), str(source.ReferencedSOPInstanceUID),
               int(number) if number is not None else None, mask.astype(bool))


def finding_masks(seg: Any, place: Place, size: tuple[int, int] | None = None
                  ) -> dict[str, dict[int, np.ndarray]]:
    """Finding id -> {image index: bool mask ``(rows, columns)``}: each segment's non-empty
    frames placed on the series' images by their source reference (``place``), frames on the
    same image joined.

    Raises 409 ``outlines_not_on_series`` when the SEG's frames are of another size than the
    series' images (``size``: rows, columns; not checked when None) or name an image outside
    the series.
    """
    rows, columns = size or (int(seg.Rows), int(seg.Columns))
    if (int(seg.Rows), int(seg.Columns)) != (rows, columns):
        raise Conflict(f"The SEG's frames are {seg.Rows} x {seg.Columns} pixels, the series' "
                       f"images {rows} x {columns}.", code="outlines_not_on_series")
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
    return images
