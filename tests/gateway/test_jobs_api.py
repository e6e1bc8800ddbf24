"""The job API against both configurations: embedded (SQLite, local store, file broker) and
production-shaped (Postgres, S3 server, Redis)."""

from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from sqlalchemy import select

from lungcad.db.models import Job, JobInput, OutboxMessage
from tests.conftest import Gateway
from tests.factories import ct_series, metaimage, nifti, nifti_header


def _files(paths: list[Path]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (p.name, p.read_bytes(), "application/dicom")) for p in paths]


def _zip(paths: list[Path], prefix: str = "Study 1/Series A/") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in paths:
            zf.write(path, prefix + path.name)
    return buffer.getvalue()


def wait_published(gateway: Gateway, job_id: str, timeout: float = 10) -> OutboxMessage:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with gateway.runtime.sessions() as session:
            row = session.scalars(select(OutboxMessage).where(
                OutboxMessage.job_id == job_id)).first()
            if row is not None and row.published_at is not None:
                return row
        time.sleep(0.05)
    raise AssertionError("the outbox row was not published")


def test_dicom_files_upload_creates_a_queued_job(gateway: Gateway, tmp_path: Path) -> None:
    paths = ct_series(tmp_path / "s", n=5)
    with gateway.client() as client:
        response = client.post("/v1/jobs", files=_files(paths),
                               data={"patient_age": "61", "patient_sex": "F"})
        assert response.status_code == 202, response.text
        job = response.json()
        assert response.headers["location"] == f"/v1/jobs/{job['id']}"
        assert job["state"] == "queued" and job["progress"] == 0 and job["attempts"] == 1
        assert job["input_format"] == "dicom" and len(job["inputs"]) == 5
        assert job["patient_id"] == "P001" and job["study_date"] == "20240102"
        polled = client.get(f"/v1/jobs/{job['id']}").json()
        assert polled["id"] == job["id"] and polled["state"] == "queued"
        # the poll's Core fast path and the list's ORM path give the same document
        listed = [j for j in client.get("/v1/jobs").json()["data"] if j["id"] == job["id"]]
        assert listed == [polled] and polled["inputs"] == job["inputs"]
    store = gateway.runtime.store
    for path, item in zip(paths, job["inputs"], strict=True):
        assert item["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    with gateway.runtime.sessions() as session:
        keys = [i.object_key for i in session.scalars(select(JobInput).where(
            JobInput.job_id == job["id"]))]
    for key, path in zip(keys, paths, strict=True):
        assert key.startswith(f"jobs/{job['id']}/input/") and "slice" not in key
        assert store.sha256(key) == hashlib.sha256(path.read_bytes()).hexdigest()
    message = wait_published(gateway, job["id"])
    assert message.payload == {"task": "lungcad.preprocess", "queue": "preprocess",
                               "job_id": job["id"], "attempt": 1}


def test_relay_publishes_ids_only_to_the_preprocess_queue(gateway: Gateway,
                                                          tmp_path: Path) -> None:
    with gateway.client() as client:
        job = client.post("/v1/jobs", files=_files(ct_series(tmp_path / "s", n=3))).json()
    wait_published(gateway, job["id"])
    if gateway.settings.broker_url.startswith("redis"):
        import redis

        raw = redis.Redis.from_url(gateway.settings.broker_url).lrange("preprocess", 0, -1)
        assert len(raw) == 1
        envelope = json.loads(raw[0])
        assert envelope["headers"]["task"] == "lungcad.preprocess"
        assert envelope["content-type"] == "application/json"
        import base64

        body = json.loads(base64.b64decode(envelope["body"]))
        assert body[0] == [job["id"], 1]
        # An inference dispatch lands in the inference queue only.
        from lungcad.celery_app import TASK_INFERENCE
        from lungcad.jobs import enqueue_stage

        with gateway.runtime.sessions() as session:
            enqueue_stage(session, session.get(Job, job["id"]), TASK_INFERENCE)
            session.commit()
        gateway.runtime.wake_relay.set()
        client = redis.Redis.from_url(gateway.settings.broker_url)
        deadline = time.monotonic() + 10
        while client.llen("inference") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.llen("inference") == 1 and client.llen("preprocess") == 1
    else:
        messages = list((gateway.settings.broker_dir / "queue").glob("*.msg"))
        assert len(messages) == 1
        assert job["id"] in messages[0].read_text()


def test_zip_with_nested_folders_and_spaces(gateway: Gateway, tmp_path: Path) -> None:
    paths = ct_series(tmp_path / "s", n=4)
    payload = _zip(paths)
    with gateway.client() as client:
        response = client.post("/v1/jobs", files=[("files", ("my study.zip", payload,
                                                             "application/zip"))])
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["input_format"] == "zip" and len(job["inputs"]) == 1
    assert job["inputs"][0]["sha256"] == hashlib.sha256(payload).hexdigest()
    assert job["inputs"][0]["size"] == len(payload)


@pytest.mark.parametrize("gz", [False, True])
def test_nifti_upload(gateway: Gateway, tmp_path: Path, gz: bool) -> None:
    path = nifti(tmp_path / ("ct.nii.gz" if gz else "ct.nii"), gz=gz)
    with gateway.client() as client:
        response = client.post("/v1/jobs", files=[("files", (path.name, path.read_bytes()))])
    assert response.status_code == 202, response.text
    assert response.json()["input_format"] == "nifti"


def test_large_upload_is_stored_byte_for_byte_with_server_timing(gateway: Gateway,
                                                                  tmp_path: Path) -> None:
    """26 MiB of random voxels: more blocks than the writer queue holds, hashed and written on
    two threads, so order and backpressure both matter to the stored bytes and checksum."""
    shape = (256, 256, 200)
    payload = nifti_header(shape) + np.random.default_rng(5).integers(
        -1024, 2000, shape[::-1], dtype=np.int16).tobytes()
    with gateway.client() as client:
        response = client.post("/v1/jobs", files=[("files", ("big.nii", payload))])
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["inputs"][0]["size"] == len(payload)
    assert job["inputs"][0]["sha256"] == hashlib.sha256(payload).hexdigest()
    with gateway.runtime.sessions() as session:
        key = session.scalars(select(JobInput.object_key).where(
            JobInput.job_id == job["id"])).one()
    assert gateway.runtime.store.get_bytes(key) == payload
    phases = [item.split(";dur=")[0] for item in response.headers["server-timing"].split(", ")]
    assert phases == ["receive", "inspect", "store", "commit"]


def test_metaimage_pair_upload(gateway: Gateway, tmp_path: Path) -> None:
    mhd, raw = metaimage(tmp_path / "m")
    with gateway.client() as client:
        response = client.post("/v1/jobs", files=[("files", (mhd.name, mhd.read_bytes())),
                                                  ("files", (raw.name, raw.read_bytes()))])
    assert response.status_code == 202, response.text
    assert [i["kind"] for i in response.json()["inputs"]] == ["metaimage_header",
                                                              "metaimage_raw"]


def test_idempotency_key_returns_the_same_job(gateway: Gateway, tmp_path: Path) -> None:
    files = _files(ct_series(tmp_path / "s", n=2))
    with gateway.client() as client:
        first = client.post("/v1/jobs", files=files, headers={"Idempotency-Key": "abc-1"})
        second = client.post("/v1/jobs", files=files, headers={"Idempotency-Key": "abc-1"})
        other = client.post("/v1/jobs", files=files, headers={"Idempotency-Key": "abc-2"})
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"] != other.json()["id"]
    assert second.headers.get("idempotent-replayed") == "true"
    with gateway.runtime.sessions() as session:
        assert len(session.scalars(select(Job)).all()) == 2


def test_idempotency_key_reused_with_another_request_or_after_delete_is_refused(
        gateway: Gateway, tmp_path: Path) -> None:
    """The same key with other files or other fields is 422 ``idempotency_key_reused`` (it was
    a 202 with the old job); after the job was deleted a replay is 410 ``job_deleted`` (it was
    the deleted job, as if new). Neither creates a job."""
    files = _files(ct_series(tmp_path / "s", n=2))
    other_study = _files(ct_series(tmp_path / "t", n=3))
    key = {"Idempotency-Key": "ris-order-7"}
    with gateway.client() as client:
        first = client.post("/v1/jobs", files=files, data={"patient_age": "64"}, headers=key)
        assert first.status_code == 202, first.text
        job_id = first.json()["id"]
        same = client.post("/v1/jobs", files=files, data={"patient_age": "64"}, headers=key)
        assert (same.status_code, same.json()["id"]) == (202, job_id)
        for changed in ({"files": other_study, "data": {"patient_age": "64"}},
                        {"files": files, "data": {"patient_age": "65"}},
                        {"files": files, "data": {}}):
            reused = client.post("/v1/jobs", headers=key, **changed)  # type: ignore[arg-type]
            assert reused.status_code == 422, reused.text
            assert reused.json()["code"] == "idempotency_key_reused"
            assert reused.json()["job_id"] == job_id
        assert client.delete(f"/v1/jobs/{job_id}").status_code == 200
        replay = client.post("/v1/jobs", files=files, data={"patient_age": "64"}, headers=key)
        assert replay.status_code == 410, replay.text
        assert (replay.json()["code"], replay.json()["job_id"]) == ("job_deleted", job_id)
    with gateway.runtime.sessions() as session:
        assert [j.id for j in session.scalars(select(Job)).all()] == [job_id]


def test_list_filter_and_paginate(gateway: Gateway, tmp_path: Path) -> None:
    ids = []
    with gateway.client() as client:
        for i in range(3):
            files = _files(ct_series(tmp_path / f"s{i}", n=2))
            ids.append(client.post("/v1/jobs", files=files).json()["id"])
        client.delete(f"/v1/jobs/{ids[0]}")
        page = client.get("/v1/jobs", params={"limit": 2}).json()
        assert page["count"] == 3 and len(page["data"]) == 2 and page["limit"] == 2
        assert [j["id"] for j in page["data"]] == [ids[2], ids[1]]  # newest first
        rest = client.get("/v1/jobs", params={"limit": 2, "offset": 2}).json()
        assert [j["id"] for j in rest["data"]] == [ids[0]]
        queued = client.get("/v1/jobs", params={"state": "queued"}).json()
        assert {j["id"] for j in queued["data"]} == set(ids[1:])
        canceled = client.get("/v1/jobs", params={"state": "canceled"}).json()
        assert [j["id"] for j in canceled["data"]] == [ids[0]]
        capped = client.get("/v1/jobs", params={"limit": 10_000}).json()
        assert capped["limit"] == gateway.settings.page_size_max
        today = time.strftime("%Y-%m-%d", time.gmtime())
        assert client.get("/v1/jobs", params={"created_from": today}).json()["count"] == 3
        assert client.get("/v1/jobs", params={"created_to": "2000-01-01"}).json()["count"] == 0
        bad = client.get("/v1/jobs", params={"state": "exploded"})
        assert bad.status_code == 422 and bad.json()["code"] == "validation_error"


def test_delete_cancels_and_removes_data(gateway: Gateway, tmp_path: Path) -> None:
    with gateway.client() as client:
        job = client.post("/v1/jobs", files=_files(ct_series(tmp_path / "s", n=2))).json()
        store = gateway.runtime.store
        assert store.list_keys(f"jobs/{job['id']}/")
        deleted = client.delete(f"/v1/jobs/{job['id']}")
        assert deleted.status_code == 200
        body = deleted.json()
        assert body["state"] == "canceled" and body["deleted"] is True
        assert store.list_keys(f"jobs/{job['id']}/") == []
        result = client.get(f"/v1/jobs/{job['id']}/result")
        assert result.status_code == 410 and result.json()["code"] == "job_deleted"


def test_result_before_success_is_409_with_state(gateway: Gateway, tmp_path: Path) -> None:
    with gateway.client() as client:
        job = client.post("/v1/jobs", files=_files(ct_series(tmp_path / "s", n=2))).json()
        response = client.get(f"/v1/jobs/{job['id']}/result")
    assert response.status_code == 409
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "job_not_succeeded" and response.json()["state"] == "queued"


def test_result_and_artifacts_stream_from_storage(gateway: Gateway, tmp_path: Path) -> None:
    from lungcad.db.models import Artifact, JobState
    from lungcad.db.types import utcnow

    with gateway.client() as client:
        job = client.post("/v1/jobs", files=_files(ct_series(tmp_path / "s", n=2))).json()
        findings = {"schema_version": "1.0", "findings": []}
        body = json.dumps(findings).encode()
        store = gateway.runtime.store
        obj = store.put_bytes(f"jobs/{job['id']}/result/findings.json", body)
        with gateway.runtime.sessions() as session:
            row = session.get(Job, job["id"])
            row.state, row.finished_at = JobState.SUCCEEDED, utcnow()
            session.add(Artifact(job_id=job["id"], name="findings.json", object_key=obj.key,
                                 content_type="application/json", size=obj.size,
                                 sha256=obj.sha256))
            session.commit()
        assert client.get(f"/v1/jobs/{job['id']}/result").json() == findings
        listing = client.get(f"/v1/jobs/{job['id']}/artifacts").json()["data"]
        assert [a["name"] for a in listing] == ["findings.json"]
        download = client.get(listing[0]["url"])
        assert download.content == body and download.headers["etag"] == f'"{obj.sha256}"'
        missing = client.get(f"/v1/jobs/{job['id']}/artifacts/nope.dcm")
        assert missing.status_code == 404 and missing.json()["code"] == "artifact_not_found"


def test_auth_and_tenant_scoping(gateway: Gateway, tmp_path: Path) -> None:
    files = _files(ct_series(tmp_path / "s", n=2))
    with gateway.client() as client:
        job = client.post("/v1/jobs", files=files).json()
    with gateway.client(key=None) as anonymous:
        for method, url in [("GET", "/v1/jobs"), ("GET", f"/v1/jobs/{job['id']}"),
                            ("POST", "/v1/jobs"), ("DELETE", f"/v1/jobs/{job['id']}")]:
            response = anonymous.request(method, url)
            assert response.status_code == 401, (method, url)
            assert response.json()["code"] == "missing_api_key"
    with gateway.client(key="lc_deadbeef_not-a-real-key") as wrong:
        response = wrong.get(f"/v1/jobs/{job['id']}")
        assert response.status_code == 401 and response.json()["code"] == "invalid_api_key"
    other_key = gateway.new_key("hospital-b")
    with gateway.client(key=other_key) as other:
        for url in (f"/v1/jobs/{job['id']}", f"/v1/jobs/{job['id']}/result",
                    f"/v1/jobs/{job['id']}/artifacts"):
            response = other.get(url)
            assert response.status_code == 404 and response.json()["code"] == "job_not_found"
        assert other.delete(f"/v1/jobs/{job['id']}").status_code == 404
        assert other.get("/v1/jobs").json()["count"] == 0
    with httpx.Client(base_url=gateway.url, headers={"X-API-Key": gateway.key}) as header_key:
        assert header_key.get(f"/v1/jobs/{job['id']}").status_code == 200


def test_revoked_key_is_refused(gateway: Gateway) -> None:
    from lungcad_gateway.auth import revoke_key

    key = gateway.new_key("hospital-c")
    with gateway.client(key=key) as client:
        assert client.get("/v1/jobs").status_code == 200
        with gateway.runtime.sessions() as session:
            assert revoke_key(session, key) == 1
            session.commit()
        response = client.get("/v1/jobs")
    assert response.status_code == 401 and response.json()["code"] == "invalid_api_key"


def test_openapi_describes_the_contract(gateway: Gateway) -> None:
    spec = httpx.get(f"{gateway.url}/openapi.json").json()
    paths = spec["paths"]
    for path in ("/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/result",
                 "/v1/jobs/{job_id}/artifacts", "/healthz", "/readyz", "/metrics"):
        assert path in paths
    upload = paths["/v1/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert "files" in upload["schema"]["properties"]
    assert "Problem" in spec["components"]["schemas"]


@pytest.mark.parametrize("path, template", [("/v1/jobs/0", "/v1/jobs/{job_id}"),
                                            ("/v1/session", "/v1/session"),
                                            ("/v1/jobs", "/v1/jobs")])
def test_405_allow_lists_every_method_the_path_answers(gateway: Gateway, path: str,
                                                      template: str) -> None:
    """Starlette's 405 named the first matching route only ('Allow: GET' where DELETE works
    too; found by schemathesis' allow_header_conformance)."""
    documented = {m.upper() for m in httpx.get(f"{gateway.url}/openapi.json").json()["paths"][
        template]}
    response = httpx.request("PATCH", f"{gateway.url}{path}")
    assert response.status_code == 405 and response.json()["code"] == "method_not_allowed"
    allowed = {m.strip() for m in response.headers["allow"].split(",")}
    assert len(documented) >= 2 and allowed - {"HEAD"} == documented


def test_openapi_documents_410_and_400_where_they_are_answered(gateway: Gateway,
                                                                 tmp_path: Path) -> None:
    """Every job operation that answers 410 job_deleted for a deleted job documents 410; a body
    that is not JSON gets 400 bad_request, documented on the operations that take JSON."""
    spec = httpx.get(f"{gateway.url}/openapi.json").json()["paths"]
    with gateway.client() as client:
        job_id = client.post("/v1/jobs", files=_files(ct_series(tmp_path / "s", n=3))).json()["id"]
        assert client.delete(f"/v1/jobs/{job_id}").status_code == 200
        gone = []
        for template, operations in spec.items():
            if "{job_id}" in template and "get" in operations:
                response = client.get(template.format(job_id=job_id, name="sr.dcm"))
                if response.status_code == 410:
                    assert response.json()["code"] == "job_deleted"
                    assert "410" in operations["get"]["responses"], template
                    gone.append(template)
        assert len(gone) >= 6, gone  # result, artifacts, one artifact, viewer and its arrays
        feedback = client.post(f"/v1/jobs/{job_id}/feedback", content=b"\xff{",
                               headers={"Content-Type": "application/json"})
        assert feedback.status_code == 400 and feedback.json()["code"] == "bad_request"
        assert "400" in spec["/v1/jobs/{job_id}/feedback"]["post"]["responses"]
    response = httpx.post(f"{gateway.url}/v1/session", content=b"\xff{",
                          headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["code"] == "bad_request"
    assert "400" in spec["/v1/session"]["post"]["responses"]


@pytest.mark.parametrize("field", ["created_from", "created_to"])
@pytest.mark.parametrize("value", ["0", "1700000000", "2026-1-5", "2026-01-05T00:00"])
def test_a_date_filter_that_is_not_yyyy_mm_dd_is_422_invalid_date(gateway: Gateway, field: str,
                                                                 value: str) -> None:
    """The schema says ``format: date``; pydantic alone read ``created_to=0`` as a Unix time
    and answered 200."""
    with gateway.client() as client:
        response = client.get("/v1/jobs", params={field: value})
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "invalid_date"
        assert "YYYY-MM-DD" in response.json()["detail"]
        assert client.get("/v1/jobs", params={field: "2026-01-05"}).status_code == 200


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/worklist"])
def test_search_text_with_control_characters_is_422(gateway: Gateway, path: str) -> None:
    """A NUL in the search reached Postgres as a 500 (found by schemathesis, 100 per op)."""
    with gateway.client() as client:
        for text in ("a\x00b", "\x1b[2J", "tab\there"):
            response = client.get(path, params={"q": text})
            assert response.status_code == 422, (text, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
        assert client.get(path, params={"q": "LIDC-IDRI 0001 é"}).status_code == 200
