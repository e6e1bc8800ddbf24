"""DICOM Segmentation of the nodules (one binary segment per finding), written with highdicom,
on the frames of the analysed series."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes

from lungcad import __version__

MANUFACTURER = "LungCAD"


def algorithm(model_name: str, model_version: str) -> hd.AlgorithmIdentificationSequence:
    return hd.AlgorithmIdentificationSequence(name=model_name, version=model_version,
                                              family=codes.DCM.ArtificialIntelligence)


def nodule_segmentation(source_images: list[pydicom.Dataset], label_map: np.ndarray,
                        finding_ids: list[str], model_name: str, model_version: str
                        ) -> pydicom.Dataset:
    """``label_map``: ``(n_slices, rows, cols)`` uint16 on ``source_images``, ``j + 1`` on the
    pixels of ``finding_ids[j]`` (segment ``j + 1``), 0 elsewhere. A label map, not one stacked
    boolean channel per finding: highdicom then neither casts nor sums a channel axis."""
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=i + 1, segment_label=f"{fid} nodule",
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Nodule,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm(model_name, model_version),
            tracking_uid=hd.UID(), tracking_id=fid)
        for i, fid in enumerate(finding_ids)]
    return hd.seg.Segmentation(
        source_images=source_images, pixel_array=label_map,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=901,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer=MANUFACTURER,
        manufacturer_model_name=model_name, software_versions=__version__,
        device_serial_number="0", content_label="NODULES",
        content_description="LungCAD nodules. Research use, not for clinical diagnosis.",
        omit_empty_frames=True)


def segment_references(seg: pydicom.Dataset) -> dict[int, hd.sr.ReferencedSegment]:
    """Segment number -> an SR reference to it, for the segments that hold at least one frame
    of ``seg`` (a segment whose outline is empty on every source slice has none: empty frames
    are omitted), read from the dataset itself. Each reference names the source images of its
    segment's frames, or the source series where the frames name none."""
    shared = seg.SharedFunctionalGroupsSequence[0]
    sources: dict[int, dict[str, pydicom.Dataset]] = {}
    for frame in seg.get("PerFrameFunctionalGroupsSequence", []):
        # highdicom moves the identification to the shared groups when all frames share it
        ident = (frame.get("SegmentIdentificationSequence")
                 or shared.get("SegmentIdentificationSequence"))
        found = sources.setdefault(int(ident[0].ReferencedSegmentNumber), {})
        for derivation in frame.get("DerivationImageSequence", []):
            for image in derivation.get("SourceImageSequence", []):
                found[image.ReferencedSOPInstanceUID] = image
    series = hd.sr.SourceSeriesForSegmentation(
        seg.ReferencedSeriesSequence[0].SeriesInstanceUID)
    return {number: hd.sr.ReferencedSegment(
        seg.SOPClassUID, seg.SOPInstanceUID, number,
        source_images=[hd.sr.SourceImageForSegmentation(image.ReferencedSOPClassUID, uid)
                       for uid, image in images.items()] or None,
        source_series=None if images else series)
        for number, images in sources.items()}
