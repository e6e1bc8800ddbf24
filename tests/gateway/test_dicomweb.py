"""STOW-RS (``POST /v1/dicomweb/studies``): a study of DICOM instances in a multipart/related
body becomes a job through the upload's own ingest. Runs against both configurations."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx
from sqlalchemy import func, select

from lungcad.db.models import AuditEvent, Job
from tests.conftest import Gateway
from tests.factories import MR_STORAGE, ct_series, nifti, read
from tests.gateway.test_bad_input import assert_nothing_left

CONTENT_TYPE = 'multipart/related; type="application/dicom"; boundary={}'


def related(parts: list[tuple[str, bytes]], boundary: str | None = None) -> tuple[bytes, str]:
    """A multipart/related body of (content type, bytes) parts and its Content-Type."""
    boundary = boundary or secrets.token_hex(16)
    body = b"".join(f"--{boundary}\r\nContent-Type: {kind}\r\n\r\n".encode() + data + b"\r\n"
                    for kind, data in parts) + f"--{boundary}--\r\n".encode()
    return body, CONTENT_TYPE.format(boundary)


def stow(gateway: Gateway, parts: list[tuple[str, bytes]], key: str | None = "default",
         content_type: str | None = None, headers: dict[str, str] | None = None
         ) -> httpx.Response:
    body, kind = related(parts)
    with gateway.client(key=key) as client:
        return client.post("/v1/dicomweb/studies", content=body,
                           headers={"Content-Type": content_type or kind, **(headers or {})})


def test_a_stow_of_one_study_answers_the_store_response_with_the_job(
        gateway: Gateway, tmp_path: Path) -> None:
    files = ct_series(tmp_path / "s", n=5)
    response = stow(gateway, [("application/dicom", f.read_bytes()) for f in files])
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/dicom+json")
    body = response.json()
    job_url = body["00081190"]["Value"][0]
    assert job_url == f"{gateway.url}{response.headers['Location']}"
    referenced = [(item["00081150"]["Value"][0], item["00081155"]["Value"][0])
                  for item in body["00081199"]["Value"]]
    assert referenced == [(str(read(f).SOPClassUID), str(read(f).SOPInstanceUID))
                          for f in files]
    with gateway.client() as client:
        job = client.get(job_url).json()
    assert job["study_instance_uid"] == str(read(files[0]).StudyInstanceUID)
    assert len(job["inputs"]) == 5
    with gateway.runtime.sessions() as session:
        events = session.scalars(select(AuditEvent).where(
            AuditEvent.resource == response.headers["Location"])).all()
        assert [(e.action, e.outcome) for e in events] == [("write", 200)]


def test_a_repeated_idempotency_key_answers_the_same_job(gateway: Gateway,
                                                         tmp_path: Path) -> None:
    parts = [("application/dicom", f.read_bytes()) for f in ct_series(tmp_path / "s", n=3)]
    first = stow(gateway, parts, headers={"Idempotency-Key": "study-42"})
    again = stow(gateway, parts, headers={"Idempotency-Key": "study-42"})
    assert first.status_code == again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    with gateway.runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 1


def test_malformed_parts_get_the_upload_codes_and_leave_nothing(gateway: Gateway,
                                                                tmp_path: Path) -> None:
    data = ct_series(tmp_path / "s", n=1)[0].read_bytes()
    mr = ct_series(tmp_path / "mr", n=1, modality="MR", sop_class=MR_STORAGE)[0].read_bytes()
    cases = [
        ([("application/dicom", data[:-500])], 422, "truncated_file"),
        ([("application/dicom", b"hello, not an image" * 20)], 422, "not_medical_image"),
        ([("application/dicom", mr)], 422, "not_ct"),
        ([("application/dicom", b"")], 422, "empty_upload"),
        ([("application/dicom", nifti(tmp_path / "v.nii").read_bytes())], 422,
         "unsupported_format"),
        ([("application/dicom", data), ("image/jpeg", b"\xff\xd8")], 415,
         "unsupported_media_type"),
    ]
    for parts, status, code in cases:
        response = stow(gateway, parts)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert (response.status_code, response.json()["code"]) == (status, code), response.text
    response = stow(gateway, [("application/dicom", data)],
                    content_type="multipart/form-data; boundary=x")
    assert (response.status_code, response.json()["code"]) == (415, "unsupported_media_type")
    response = stow(gateway, [("application/dicom", data)],
                    content_type='multipart/related; type="application/dicom"; boundary=zz')
    assert (response.status_code, response.json()["code"]) == (400, "malformed_body")
    assert_nothing_left(gateway)


def test_stow_needs_an_api_key(gateway: Gateway, tmp_path: Path) -> None:
    data = ct_series(tmp_path / "s", n=1)[0].read_bytes()
    assert stow(gateway, [("application/dicom", data)], key=None).status_code == 401
    assert stow(gateway, [("application/dicom", data)], key="lc_bad_key").status_code == 401
    assert_nothing_left(gateway)
