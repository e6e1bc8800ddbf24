"""The findings' outlines on the original series through the API (issue 15: the SEG outlines).

The expected native pixels are computed here from the DICOM files' own geometry
(ImagePositionPatient, ImageOrientationPatient, PixelSpacing, read with pydicom) and the
findings' masks on the 1 mm grid (the analysis' label volume): each native pixel centre is
taken to LPS mm, then to the nearest 1 mm voxel. Neither the SEG nor the gateway's code is used
for the expectation.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pydicom
from sqlalchemy import select

from lungcad.db.models import Artifact, AuditEvent
from lungcad.imaging.geometry import Geometry
from lungcad_preprocess.pipeline import Preprocessed
from tests.conftest import Gateway
from tests.factories import nifti
from tests.frontend.cases import publish_case, upload
from tests.frontend.conftest import Case
from tests.frontend.test_viewer_original_api import read_folder


def expected_masks(case: Case, files: list[pydicom.Dataset]) -> dict[str, np.ndarray]:
    """Finding id -> bool ``(n, rows, columns)``: its mask at the native pixel centres, images
    in InstanceNumber order."""
    assert case.labels is not None
    grid = Geometry.from_dict(case.result.meta["geometry"])
    rows, columns = int(files[0].Rows), int(files[0].Columns)
    rr, cc = np.meshgrid(np.arange(rows), np.arange(columns), indexing="ij")
    sampled = np.zeros((len(files), rows, columns), np.int64)
    for k, ds in enumerate(files):
        iop = np.asarray([float(v) for v in ds.ImageOrientationPatient])
        row_mm, col_mm = (float(v) for v in ds.PixelSpacing)
        # along a row the column index grows (iop[:3]); down a column the row index (iop[3:])
        world = (np.asarray([float(v) for v in ds.ImagePositionPatient])
                 + cc[..., None] * col_mm * iop[:3] + rr[..., None] * row_mm * iop[3:])
        voxel = np.rint(grid.world_to_index(world)).astype(np.int64)
        inside = np.all((voxel >= 0) & (voxel < np.asarray(case.labels.shape)), axis=-1)
        z, y, x = (np.where(inside, voxel[..., i], 0) for i in range(3))
        sampled[k] = np.where(inside, case.labels[z, y, x], 0)
    return {fid: sampled == j + 1 for j, fid in enumerate(case.finding_ids)}


def served_mask(outline: dict, shape: tuple[int, int, int]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    for image in outline["images"]:
        for row, first, length in image["runs"]:
            mask[image["index"], row, first:first + length] = True
        assert mask[image["index"]].sum() == image["pixels"]
    return mask


def test_outlines_lie_where_the_findings_masks_are_on_the_native_images(
        gateway: Gateway, synthetic_case_with_seg: Case) -> None:
    case = synthetic_case_with_seg
    files = read_folder(case.folder)
    shape = (len(files), int(files[0].Rows), int(files[0].Columns))
    with gateway.client() as client:
        info = client.get(f"/v1/jobs/{case.job_id}/viewer").json()["original"]
        response = client.get(info["outlines_url"])
    assert info["outlines_url"] == f"/v1/jobs/{case.job_id}/viewer/original/outlines"
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["source"] == "seg.dcm" and (body["rows"], body["columns"]) == shape[1:]
    assert "Research use" in body["notice"]
    assert [f["finding_id"] for f in body["findings"]] == case.finding_ids
    expected = expected_masks(case, files)
    for outline, finding in zip(body["findings"], case.document.findings, strict=True):
        want = expected[finding.id]
        assert want.any(), finding.id  # the synthetic nodules all have a mask
        assert outline["segment_number"] is not None and outline["images"], finding.id
        # each image named by its stack index, InstanceNumber and SOP Instance UID of the file
        for image in outline["images"]:
            ds = files[image["index"]]
            assert image["instance_number"] == int(ds.InstanceNumber)
            assert image["sop_instance_uid"] == str(ds.SOPInstanceUID)
        got = served_mask(outline, shape)
        dice = 2 * (got & want).sum() / (got.sum() + want.sum())
        assert dice >= 0.9, (finding.id, dice, got.sum(), want.sum())
        # the images spanned: those where the mask has more than a pixel or two of edge
        spans = {int(k) for k in np.nonzero(want.sum(axis=(1, 2)) > 2)[0]}
        assert spans <= {i["index"] for i in outline["images"]}, finding.id
        assert {i["index"] for i in outline["images"]} <= set(np.nonzero(
            want.any(axis=(1, 2)))[0]) | {k + d for k in spans for d in (-1, 1)}
        # the finding's centre lies inside its outline on the image the finding names
        k = [int(ds.InstanceNumber) for ds in files].index(finding.instance_number)
        ds = files[k]
        iop = np.asarray([float(v) for v in ds.ImageOrientationPatient])
        rel = np.asarray(finding.center_mm) - np.asarray([float(v) for v in
                                                          ds.ImagePositionPatient])
        row_mm, col_mm = (float(v) for v in ds.PixelSpacing)
        r, c = round(float(rel @ iop[3:]) / row_mm), round(float(rel @ iop[:3]) / col_mm)
        assert got[k, r - 1:r + 2, c - 1:c + 2].any(), (finding.id, r, c)
    with gateway.runtime.sessions() as session:
        reads = session.scalars(select(AuditEvent.resource).where(
            AuditEvent.action == "read",
            AuditEvent.resource == f"jobs/{case.job_id}/viewer/original/outlines")).all()
    assert len(reads) == 1


def test_without_a_seg_every_finding_has_no_outline(gateway: Gateway,
                                                    synthetic_case: Case) -> None:
    with gateway.client() as client:
        response = client.get(f"/v1/jobs/{synthetic_case.job_id}/viewer/original/outlines")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["source"] is None
    assert [(f["finding_id"], f["segment_number"], f["images"]) for f in body["findings"]] == [
        (fid, None, []) for fid in synthetic_case.finding_ids]


def test_outlines_are_per_tenant(gateway: Gateway, synthetic_case_with_seg: Case) -> None:
    other = gateway.new_key("hospital-b")
    with gateway.client(key=other) as client:
        response = client.get(f"/v1/jobs/{synthetic_case_with_seg.job_id}"
                              "/viewer/original/outlines")
    assert response.status_code == 404
    assert response.json()["code"] == "job_not_found"


def test_an_unreadable_seg_is_a_specific_error(gateway: Gateway,
                                               synthetic_case_with_seg: Case) -> None:
    job = synthetic_case_with_seg.job_id
    with gateway.runtime.sessions() as session:
        key = session.scalars(select(Artifact.object_key).where(
            Artifact.job_id == job, Artifact.name == "seg.dcm")).one()
    gateway.runtime.store.put_bytes(key, b"not a DICOM file", "application/dicom")
    with gateway.client() as client:
        response = client.get(f"/v1/jobs/{job}/viewer/original/outlines")
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "outlines_undecodable"


def test_a_volume_upload_has_no_outlines(gateway: Gateway, tmp_path: Path,
                                         synthetic_study: tuple[Path, Preprocessed]) -> None:
    job = upload(gateway, nifti(tmp_path / "ct.nii.gz", gz=True))
    _, result = synthetic_study
    volume_only = copy.copy(result)
    volume_only.meta = {**result.meta, "source": {"format": "nii.gz", "slices": None,
                                                  "notes": {}}}
    publish_case(gateway, job["id"], volume_only, None)
    with gateway.client() as client:
        response = client.get(f"/v1/jobs/{job['id']}/viewer/original/outlines")
    assert response.status_code == 404
    assert response.json()["code"] == "original_series_not_found"
