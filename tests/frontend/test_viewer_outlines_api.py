"""The findings' masks on the 1 mm reconstruction grid through the API (issue 15, 1 mm viewer).

The served masks come from the job's DICOM SEG (the findings' masks sampled at the native
pixels); the expectation here is the analysis' own label volume on the 1 mm grid (``Case.labels``,
finding j is label j + 1), which the SEG was made from. The answer's boxes and run lengths are
decoded here from the documented format, without the gateway's code.
"""

from __future__ import annotations

import copy
import io
from pathlib import Path

import numpy as np
import pydicom
from sqlalchemy import select

from lungcad.db.models import Artifact, AuditEvent
from lungcad_preprocess.pipeline import Preprocessed
from tests.conftest import Gateway
from tests.factories import nifti
from tests.frontend.cases import findings_for, publish_case, upload
from tests.frontend.conftest import Case, synthetic_nodules


def decode(outline: dict, shape: tuple[int, ...]) -> np.ndarray:
    """A served finding's bool mask ``(z, y, x)`` on the whole grid: its box, filled from run
    lengths over the box in C order, alternating outside and inside, outside first."""
    mask = np.zeros(shape, bool)
    if outline["box_zyx"] is None:
        assert outline["runs"] == [] and outline["voxels"] == 0
        return mask
    z0, y0, x0, z1, y1, x1 = outline["box_zyx"]
    assert 0 <= z0 < z1 <= shape[0] and 0 <= y0 < y1 <= shape[1] and 0 <= x0 < x1 <= shape[2]
    size = (z1 - z0, y1 - y0, x1 - x0)
    assert sum(outline["runs"]) == int(np.prod(size))
    flat = np.zeros(int(np.prod(size)), bool)
    position = 0
    for i, length in enumerate(outline["runs"]):
        flat[position:position + length] = i % 2 == 1
        position += length
    mask[z0:z1, y0:y1, x0:x1] = flat.reshape(size)
    assert mask.sum() == outline["voxels"]
    return mask


def seg_key(gateway: Gateway, job: str) -> str:
    with gateway.runtime.sessions() as session:
        return session.scalars(select(Artifact.object_key).where(
            Artifact.job_id == job, Artifact.name == "seg.dcm")).one()


def test_each_findings_mask_on_the_grid_matches_the_analysis_labels(
        gateway: Gateway, synthetic_case_with_seg: Case) -> None:
    case = synthetic_case_with_seg
    assert case.labels is not None
    with gateway.client() as client:
        info = client.get(f"/v1/jobs/{case.job_id}/viewer").json()
        response = client.get(info["outlines_url"])
    assert info["outlines_url"] == f"/v1/jobs/{case.job_id}/viewer/outlines"
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["source"] == "seg.dcm" and "Research use" in body["notice"]
    assert tuple(body["shape_zyx"]) == tuple(info["geometry"]["shape_zyx"]) == case.labels.shape
    assert [f["finding_id"] for f in body["findings"]] == case.finding_ids
    served = [decode(f, case.labels.shape) for f in body["findings"]]
    for j, (outline, got) in enumerate(zip(body["findings"], served, strict=True)):
        want = case.labels == j + 1
        assert want.sum() > 100, outline["finding_id"]  # the synthetic nodules all have a mask
        assert outline["segment_number"] is not None
        dice = 2 * (got & want).sum() / (got.sum() + want.sum())
        assert dice >= 0.9, (outline["finding_id"], dice, got.sum(), want.sum())
    # each mask is its own finding's: no two overlap
    assert sum(m.sum() for m in served) == np.logical_or.reduce(served).sum()
    with gateway.runtime.sessions() as session:
        reads = session.scalars(select(AuditEvent.resource).where(
            AuditEvent.action == "read",
            AuditEvent.resource == f"jobs/{case.job_id}/viewer/outlines")).all()
        decoded = session.scalars(select(Artifact.name).where(
            Artifact.job_id == case.job_id, Artifact.name == "original_series")).all()
    assert len(reads) == 1
    assert decoded == []  # placed by the slice table: the original series was not decoded


def test_without_a_seg_no_finding_has_a_mask(gateway: Gateway, synthetic_case: Case) -> None:
    with gateway.client() as client:
        info = client.get(f"/v1/jobs/{synthetic_case.job_id}/viewer").json()
        response = client.get(f"/v1/jobs/{synthetic_case.job_id}/viewer/outlines")
    assert info["outlines_url"] is None
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["source"] is None
    assert [(f["finding_id"], f["segment_number"], f["box_zyx"], f["runs"])
            for f in body["findings"]] == [(fid, None, None, [])
                                           for fid in synthetic_case.finding_ids]


def test_a_volume_upload_has_no_masks(gateway: Gateway, tmp_path: Path,
                                      synthetic_study: tuple[Path, Preprocessed]) -> None:
    _, result = synthetic_study
    job = upload(gateway, nifti(tmp_path / "ct.nii.gz", gz=True))
    volume_only = copy.copy(result)
    volume_only.meta = {**result.meta, "source": {"format": "nii.gz", "slices": None,
                                                  "notes": {}}}
    publish_case(gateway, job["id"], volume_only,
                 findings_for(volume_only, synthetic_nodules(result), job["id"]))
    with gateway.client() as client:
        response = client.get(f"/v1/jobs/{job['id']}/viewer/outlines")
    assert response.status_code == 200, response.text
    assert response.json()["source"] is None


def test_outlines_need_a_key_and_are_per_tenant(gateway: Gateway,
                                                synthetic_case_with_seg: Case) -> None:
    path = f"/v1/jobs/{synthetic_case_with_seg.job_id}/viewer/outlines"
    with gateway.client(key=gateway.new_key("hospital-b")) as client:
        response = client.get(path)
    assert response.status_code == 404
    assert response.json()["code"] == "job_not_found"
    with gateway.client(key=None) as client:
        assert client.get(path).status_code == 401


def test_an_unreadable_seg_is_a_specific_error(gateway: Gateway,
                                               synthetic_case_with_seg: Case) -> None:
    job = synthetic_case_with_seg.job_id
    gateway.runtime.store.put_bytes(seg_key(gateway, job), b"not a DICOM file",
                                    "application/dicom")
    with gateway.client() as client:
        response = client.get(f"/v1/jobs/{job}/viewer/outlines")
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "outlines_undecodable"


def test_a_seg_on_another_series_is_a_specific_error(gateway: Gateway,
                                                     synthetic_case_with_seg: Case) -> None:
    job = synthetic_case_with_seg.job_id
    key = seg_key(gateway, job)
    seg = pydicom.dcmread(io.BytesIO(gateway.runtime.store.get_bytes(key)))
    frame = seg.PerFrameFunctionalGroupsSequence[0]
    frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID = "1.2.3.4"
    buffer = io.BytesIO()
    seg.save_as(buffer)
    gateway.runtime.store.put_bytes(key, buffer.getvalue(), "application/dicom")
    with gateway.client() as client:
        response = client.get(f"/v1/jobs/{job}/viewer/outlines")
    assert response.status_code == 409
    assert response.json()["code"] == "outlines_not_on_series"

