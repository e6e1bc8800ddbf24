"""Checks of the DICOM SR and SEG that LungCAD writes, shared by the synthetic and real-data
tests: read back with pydicom and highdicom, not with the code that wrote them."""

from __future__ import annotations

import io

import highdicom as hd
import pydicom


def segments_with_frames(seg_bytes: bytes) -> dict[int, str]:
    """Segment number -> label, for the segments that hold at least one frame of the SEG."""
    seg = pydicom.dcmread(io.BytesIO(seg_bytes))
    shared = seg.SharedFunctionalGroupsSequence[0]
    labels = {item.SegmentNumber: item.SegmentLabel for item in seg.SegmentSequence}
    numbers = {(frame.get("SegmentIdentificationSequence")
                or shared.SegmentIdentificationSequence)[0].ReferencedSegmentNumber
               for frame in seg.PerFrameFunctionalGroupsSequence}
    return {n: labels[n] for n in numbers}


def assert_sr_references_seg(sr_bytes: bytes, seg_bytes: bytes, with_segment: list[str]) -> None:
    """The SR's volumetric groups reference exactly the findings in ``with_segment``, each its
    own segment of the stored SEG (same tracking identifier as its planar group)."""
    sr = hd.sr.srread(io.BytesIO(sr_bytes))
    seg = pydicom.dcmread(io.BytesIO(seg_bytes))
    planar = {g.tracking_identifier: g.tracking_uid
              for g in sr.content.get_planar_roi_measurement_groups()}
    present = segments_with_frames(seg_bytes)
    linked = {}
    for group in sr.content.get_volumetric_roi_measurement_groups():
        reference = group.referenced_segment
        assert reference is not None
        assert reference.referenced_sop_instance_uid == seg.SOPInstanceUID
        number = reference.referenced_segment_numbers[0]
        assert present[number] == f"{group.tracking_identifier} nodule"
        assert planar[group.tracking_identifier] == group.tracking_uid
        assert reference.source_images_for_segmentation
        linked[group.tracking_identifier] = number
    assert sorted(linked) == sorted(with_segment)
    evidence = {item.ReferencedSOPInstanceUID
                for study in sr.CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence
                for item in series.ReferencedSOPSequence}
    assert seg.SOPInstanceUID in evidence
