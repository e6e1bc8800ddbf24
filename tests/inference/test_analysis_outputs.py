"""Candidates to findings, key images, SR and SEG, on a synthetic chest CT written as DICOM and
run through the real preprocessing. The detector is not involved: candidates are placed at the
phantom's known nodules, so this tests everything downstream of it."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, replace
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from PIL import Image

from lungcad import synthetic
from lungcad.findings import FindingsDocument, ModelInfo
from lungcad_inference.analysis import PatientInfo, analyze_volume, case_probability
from lungcad_inference.outputs import dicom_reports, render_outputs
from lungcad_preprocess.pipeline import PreprocessOptions, preprocess_path
from tests.factories import instance_number_at
from tests.inference.dicom_checks import assert_sr_references_seg, segments_with_frames


@dataclass
class KnownCandidate:
    centre_zyx: tuple[float, float, float]
    diameter_mm: float
    nodule_probability: float = 0.9
    malignancy_probability: float = 0.4


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("phantom")
    case = synthetic.make_chest_ct(seed=3)
    synthetic.write_dicom_series(case.hu, case.geometry, folder, patient_age="067Y",
                                 patient_sex="F")
    pre = preprocess_path(folder, PreprocessOptions(threads=2))
    candidates = [KnownCandidate(tuple(pre.geometry.world_to_index(n.center_lps)),
                                 n.diameter_mm * 1.1) for n in case.nodules]
    candidates.append(KnownCandidate(candidates[0].centre_zyx, 8.0, 0.5))  # a duplicate
    result = analyze_volume(pre.hu, pre.lungs, pre.geometry, pre.meta, candidates,
                            PatientInfo(age=67, sex="F", study_instance_uid="1.2.3"),
                            ModelInfo(name="test", version="0"), job_id="job-1")
    outputs = render_outputs(pre.hu, pre.lungs, pre.geometry, pre.meta, result, folder)
    return case, pre, result, outputs, folder


def test_findings_match_the_phantom(phantom) -> None:  # type: ignore[no-untyped-def]
    case, pre, result, *_ = phantom
    doc = result.document
    assert len(doc.findings) == len(case.nodules)  # the duplicate candidate was merged
    by_truth = {}
    for nodule in case.nodules:
        dist = [np.linalg.norm(np.asarray(f.center_mm) - nodule.center_lps)
                for f in doc.findings]
        by_truth[nodule] = doc.findings[int(np.argmin(dist))]
        assert min(dist) < 3.0
    for nodule, finding in by_truth.items():
        if nodule.kind == "lobulated":  # lobes reach past the core sphere's diameter
            assert nodule.diameter_mm <= finding.diameter_mm <= 1.3 * nodule.diameter_mm
        else:
            assert abs(finding.diameter_mm - nodule.diameter_mm) <= 3.0, (nodule, finding)
        if nodule.kind == "ground_glass":
            assert finding.type in ("ground-glass", "part-solid")
        if nodule.kind == "solid" and not nodule.juxta_pleural:
            assert finding.type == "solid"
        assert finding.location.side == ("right" if nodule.center_lps[0] < 0 else "left")
    juxta = next(f for n, f in by_truth.items() if n.juxta_pleural)
    assert juxta.location.juxtapleural
    assert doc.case.lung_rads.category in ("4A", "4B", "4X")
    assert doc.case.case_class == "suspicious for malignancy"
    assert doc.case.brock_assumptions == []  # age and sex were given
    assert doc.lungs.left_ml > 500 and doc.lungs.right_ml > 500
    assert doc.series.original_spacing_mm == pytest.approx([1.8, 1.8, 2.5], abs=1e-3)


def test_each_finding_maps_back_to_its_original_slice(phantom) -> None:  # type: ignore[no-untyped-def]
    case, pre, result, _, folder = phantom
    slices = pre.slices
    for finding in result.document.findings:
        col, row, k = finding.center_voxel
        assert finding.sop_instance_uid == slices.sop_instance_uids[k]
        number, sop_uid = instance_number_at(folder, finding.center_mm)
        assert (finding.instance_number, finding.sop_instance_uid) == (number, sop_uid)
        offset = np.asarray(finding.center_mm) @ slices.normal
        assert abs(slices.offsets_mm[k] - offset) <= 2.5 / 2 + 1e-6
        world = (np.asarray(slices.positions[k]) + col * 1.8 * np.asarray(slices.row_direction)
                 + row * 1.8 * np.asarray(slices.column_direction))
        in_plane = np.asarray(finding.center_mm) - world
        in_plane -= (in_plane @ slices.normal) * slices.normal
        assert np.linalg.norm(in_plane) <= 1.8


def test_outputs_are_readable(phantom) -> None:  # type: ignore[no-untyped-def]
    _, _, result, outputs, _ = phantom
    doc = FindingsDocument.model_validate(json.loads(outputs["findings.json"][0]))
    assert doc.notice == "Research use, not for clinical diagnosis."
    assert json.loads(outputs["findings.json"][0])["case"]["class"] == doc.case.case_class
    for f in doc.findings:
        for plane in ("axial", "coronal", "sagittal"):
            image = Image.open(io.BytesIO(outputs[f"keyimages/{f.id}_{plane}.png"][0]))
            assert image.size[0] >= 128 and image.mode == "RGB"
            assert (np.asarray(image) == [255, 64, 64]).all(axis=-1).any()  # contour drawn
    Image.open(io.BytesIO(outputs["overview.png"][0])).verify()

    sr = hd.sr.srread(io.BytesIO(outputs["sr.dcm"][0]))
    groups = sr.content.get_planar_roi_measurement_groups()
    assert len(groups) == len(doc.findings)
    for group, finding in zip(groups, doc.findings, strict=True):
        names = {m.name.meaning: m.value for m in group.get_measurements()}
        assert names["Long Axis"] == pytest.approx(finding.diameter_mm, abs=0.05)
        assert names["Volume"] == pytest.approx(finding.volume_mm3, abs=0.05)
        region = group.roi
        assert region.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == \
            finding.sop_instance_uid

    seg = hd.seg.segread(io.BytesIO(outputs["seg.dcm"][0]))
    assert seg.number_of_segments == len(doc.findings)
    plain = pydicom.dcmread(io.BytesIO(outputs["seg.dcm"][0]))
    assert plain.Modality == "SEG" and plain.PatientID == "SYN0001"
    refs = {r.ReferencedSOPInstanceUID for item in plain.ReferencedSeriesSequence
            for r in item.ReferencedInstanceSequence}
    assert {f.sop_instance_uid for f in doc.findings} <= refs
    assert_sr_references_seg(outputs["sr.dcm"][0], outputs["seg.dcm"][0],
                             [f.id for f in doc.findings])


@pytest.mark.parametrize("outlined", ["all but the first", "only the last"])
def test_a_finding_without_a_segment_in_the_seg_keeps_an_unlinked_group(
        phantom, outlined: str) -> None:  # type: ignore[no-untyped-def]
    """A finding whose outline is empty on the source slices has no segment in the SEG (empty
    frames are omitted): its SR group must not reference one, and the others still do."""
    _, pre, result, _, folder = phantom
    n = len(result.document.findings)
    keep = list(range(2, n + 1)) if outlined == "all but the first" else [n]
    labels = np.where(np.isin(result.labels, keep), result.labels, 0).astype(result.labels.dtype)
    outputs = dicom_reports(replace(result, labels=labels), pre.geometry, pre.slices, folder)
    findings = result.document.findings
    assert len(hd.sr.srread(io.BytesIO(outputs["sr.dcm"][0]))
               .content.get_planar_roi_measurement_groups()) == n
    assert sorted(segments_with_frames(outputs["seg.dcm"][0])) == keep
    assert_sr_references_seg(outputs["sr.dcm"][0], outputs["seg.dcm"][0],
                             [findings[k - 1].id for k in keep])


def test_case_probability_is_a_noisy_or() -> None:
    assert case_probability([]) == 0.0
    assert case_probability([(1.0, 0.5), (1.0, 0.5)]) == pytest.approx(0.75)
    assert case_probability([(0.5, 0.2)]) == pytest.approx(0.1)


def test_a_study_without_findings_says_no_nodule_detected_never_normal(tmp_path: Path) -> None:
    case = synthetic.make_chest_ct(seed=4, nodules=[])
    synthetic.write_dicom_series(case.hu, case.geometry, tmp_path)
    pre = preprocess_path(tmp_path, PreprocessOptions(threads=2))
    result = analyze_volume(pre.hu, pre.lungs, pre.geometry, pre.meta, [], PatientInfo(),
                            ModelInfo(name="test", version="0"))
    assert result.document.findings == []
    assert result.document.case.case_class == "no nodule detected"
    assert result.document.case.lung_rads.category == "1"
    outputs = render_outputs(pre.hu, pre.lungs, pre.geometry, pre.meta, result, tmp_path)
    assert "seg.dcm" not in outputs
    sr = hd.sr.srread(io.BytesIO(outputs["sr.dcm"][0]))
    assert sr.content.get_planar_roi_measurement_groups() == []
    assert len(sr.content.get_image_measurement_groups()) == 1

    def coded_values(items):  # type: ignore[no-untyped-def]
        for item in items:
            if item.ValueType == "CODE":
                yield (item.ConceptNameCodeSequence[0].CodeMeaning,
                       item.ConceptCodeSequence[0].CodeMeaning)
            yield from coded_values(item.get("ContentSequence", []))

    plain = pydicom.dcmread(io.BytesIO(outputs["sr.dcm"][0]))
    assert ("Finding", "Absent") in set(coded_values(plain.ContentSequence))


def test_a_study_with_one_finding_references_its_segment(phantom) -> None:  # type: ignore[no-untyped-def]
    """One finding gives a one-segment SEG, where highdicom moves the segment identification to
    the shared functional groups (``from_segmentation`` fails there, as on QIN-LSC-0088)."""
    _, pre, result, _, folder = phantom
    doc = result.document
    single = replace(result, document=doc.model_copy(update={"findings": doc.findings[:1]}),
                     labels=np.where(result.labels == 1, result.labels, 0).astype(
                         result.labels.dtype),
                     measurements=result.measurements[:1], hits=result.hits[:1])
    outputs = dicom_reports(single, pre.geometry, pre.slices, folder)
    assert "SegmentIdentificationSequence" in pydicom.dcmread(io.BytesIO(
        outputs["seg.dcm"][0])).SharedFunctionalGroupsSequence[0]
    assert_sr_references_seg(outputs["sr.dcm"][0], outputs["seg.dcm"][0], [doc.findings[0].id])
