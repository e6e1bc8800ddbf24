"""The SEG built from per-finding crops (``seg_report``) equals, frame for frame and voxel for
voxel, the full-volume construction it replaced: every pixel of every source slice sampled
(nearest) from the label volume, one stacked boolean channel per finding, all source slices
given to highdicom. Read back with highdicom, each segment maps to the right source instances.

A small synthetic case: an axial CT series of 2.5 mm slices and 1.8 mm pixels, and a 1 mm
label grid turned 12 degrees about the patient axis and shifted against it (as a preprocessed
grid is never aligned with the original pixels), with findings whose bounding boxes overlap, a
finding without any voxel and one that reaches past the edge of the series."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.sr.codedict import codes
from scipy import ndimage

from lungcad import synthetic
from lungcad.findings import ModelInfo
from lungcad.imaging import Geometry
from lungcad.imaging.slices import SliceTable
from lungcad_inference.outputs import dicom_bytes, seg_report
from lungcad_inference.reports.source import load_series_headers, pixel_world

SOURCE = synthetic.default_geometry(shape=(24, 40, 48), spacing=(2.5, 1.8, 1.8))
ANGLE = np.deg2rad(12.0)
GRID = Geometry((60, 66, 80), (1.0, 1.0, 1.0), (-38.0, -12.0, -27.0),
                (np.cos(ANGLE), -np.sin(ANGLE), 0.0, np.sin(ANGLE), np.cos(ANGLE), 0.0,
                 0.0, 0.0, 1.0))
# (z, y, x) centre on GRID and radius in voxels; label k + 1. Labels 1 and 2 touch (their
# boxes overlap), 3 has no voxel, 5 runs off the series' last slice.
BLOBS = [((20, 30, 28), 10.0), ((20, 30, 44), 7.0), None, ((40, 20, 60), 3.0),
         ((54, 45, 20), 4.5)]


@dataclass
class Case:
    folder: Path
    headers: list[pydicom.Dataset]
    slices: SliceTable
    labels: np.ndarray


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> Case:
    folder = tmp_path_factory.mktemp("series")
    hu = np.full(SOURCE.shape, -800, np.int16)
    paths = synthetic.write_dicom_series(hu, SOURCE, folder)
    uids = [str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths]
    d = SOURCE.direction_matrix
    slices = SliceTable(tuple(uids), (None,) * len(uids),
                        tuple(tuple(SOURCE.index_to_world([float(k), 0.0, 0.0]))
                              for k in range(len(uids))),
                        tuple(d[:, 0]), tuple(d[:, 1]), (SOURCE.spacing[1], SOURCE.spacing[2]))
    zz, yy, xx = np.indices(GRID.shape)
    labels = np.zeros(GRID.shape, np.uint16)
    for label, blob in enumerate(BLOBS, start=1):
        if blob is not None:
            (cz, cy, cx), radius = blob
            inside = (zz - cz) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
            labels[inside & (labels == 0)] = label
    return Case(folder, load_series_headers(folder, slices), slices, labels)


def full_volume_labels(case: Case) -> np.ndarray:
    """Every pixel of every source slice, sampled (nearest) from the label volume."""
    rows, cols = SOURCE.shape[1:]
    rr, cc = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    out = np.zeros((len(case.slices), rows, cols), np.uint16)
    for k in range(len(case.slices)):
        index = GRID.world_to_index(pixel_world(case.slices, k, rr, cc))
        out[k] = ndimage.map_coordinates(case.labels, index.reshape(-1, 3).T, order=0,
                                         cval=0).reshape(rr.shape)
    return out


def full_volume_seg(case: Case, on_slices: np.ndarray) -> pydicom.Dataset:
    """The construction the crops replaced: stacked boolean channels on all source slices."""
    masks = np.stack([on_slices == k + 1 for k in range(len(BLOBS))], axis=-1)
    algorithm = hd.AlgorithmIdentificationSequence(name="test", version="0",
                                                   family=codes.DCM.ArtificialIntelligence)
    descriptions = [hd.seg.SegmentDescription(
        segment_number=k + 1, segment_label=f"N{k + 1} nodule",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Nodule,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm) for k in range(len(BLOBS))]
    return hd.seg.Segmentation(
        source_images=case.headers, pixel_array=masks.astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=901,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="LungCAD",
        manufacturer_model_name="test", software_versions="0", device_serial_number="0",
        omit_empty_frames=True)


def fast_seg(case: Case) -> pydicom.Dataset:
    seg, segmented = seg_report(case.labels, [f"N{k + 1}" for k in range(len(BLOBS))],
                                ModelInfo(name="test", version="0"), GRID, case.slices,
                                case.headers)
    assert seg is not None
    assert {ds.SOPInstanceUID for ds in segmented} <= set(case.slices.sop_instance_uids)
    return pydicom.dcmread(io.BytesIO(dicom_bytes(seg)))


def frames(seg: pydicom.Dataset) -> dict[tuple[int, str, tuple[float, ...]], bytes]:
    """(segment, source SOP Instance UID, ImagePositionPatient) -> the frame's pixels."""
    shared = seg.SharedFunctionalGroupsSequence[0]
    pixels = seg.pixel_array.reshape(int(seg.NumberOfFrames), seg.Rows, seg.Columns)
    out = {}
    for frame, array in zip(seg.PerFrameFunctionalGroupsSequence, pixels, strict=True):
        ident = (frame.get("SegmentIdentificationSequence")
                 or shared.SegmentIdentificationSequence)
        source = frame.DerivationImageSequence[0].SourceImageSequence[0]
        position = tuple(round(float(v), 3)
                         for v in frame.PlanePositionSequence[0].ImagePositionPatient)
        out[(int(ident[0].ReferencedSegmentNumber), str(source.ReferencedSOPInstanceUID),
             position)] = array.astype(bool).tobytes()
    return out


def test_the_case_covers_what_it_claims(case: Case) -> None:
    on_slices = full_volume_labels(case)
    present = {k + 1 for k in range(len(BLOBS)) if (on_slices == k + 1).any()}
    assert present == {1, 2, 4, 5}  # 3 has no voxel
    assert (on_slices[-1] == 5).any()  # 5 reaches the last slice (and the grid goes further)
    boxes = ndimage.find_objects(case.labels)
    overlap = [max(a.start, b.start) < min(a.stop, b.stop) for a, b in zip(boxes[0], boxes[1],
                                                                       strict=True)]
    assert all(overlap)  # the boxes of 1 and 2 overlap


def test_crops_give_the_same_seg_as_the_full_volume(case: Case) -> None:
    reference = full_volume_seg(case, full_volume_labels(case))
    fast = fast_seg(case)
    expected = frames(pydicom.dcmread(io.BytesIO(dicom_bytes(reference))))
    assert frames(fast) == expected
    assert fast.SegmentsOverlap == reference.SegmentsOverlap == "NO"
    assert [s.SegmentNumber for s in fast.SegmentSequence] == [1, 2, 3, 4, 5]


def test_seg_read_back_maps_each_segment_to_its_source_instances(case: Case) -> None:
    on_slices = full_volume_labels(case)
    uids = case.slices.sop_instance_uids
    seg = hd.seg.segread(io.BytesIO(dicom_bytes(fast_seg(case))))
    for number in (1, 2, 4, 5):
        crossed = [k for k in range(len(uids)) if (on_slices[k] == number).any()]
        referenced = {str(frame.DerivationImageSequence[0].SourceImageSequence[0]
                          .ReferencedSOPInstanceUID)
                      for frame in seg.PerFrameFunctionalGroupsSequence
                      if int((frame.get("SegmentIdentificationSequence")
                              or seg.SharedFunctionalGroupsSequence[0]
                              .SegmentIdentificationSequence)[0].ReferencedSegmentNumber)
                      == number}
        assert referenced == {uids[k] for k in crossed}
        pixels = seg.get_pixels_by_source_instance([uids[k] for k in crossed],
                                                   segment_numbers=[number])
        np.testing.assert_array_equal(pixels[..., 0] > 0, on_slices[crossed] == number)
