"""The dashboard's API: worklist, viewer case and arrays, feedback, sessions, static files.

Runs in both configurations (embedded, production) on a synthetic case (real preprocessing, a
findings from the real analysis at known nodule positions: see tests/frontend/cases.py).
"""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from lungcad.db.models import AuditEvent, FindingFeedback, FindingRow
from lungcad.imaging.geometry import Geometry
from lungcad_preprocess.pipeline import Preprocessed
from tests.conftest import Gateway
from tests.factories import instance_number_at
from tests.frontend.cases import findings_document, publish_case, upload
from tests.frontend.conftest import Case


def inflate_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(zlib.decompress(data, -15)), allow_pickle=False)


def test_viewer_arrays_are_the_stored_volume_and_mask(gateway: Gateway,
                                                      synthetic_case: Case) -> None:
    job, result = synthetic_case.job_id, synthetic_case.result
    with gateway.client() as client:
        info = client.get(f"/v1/jobs/{job}/viewer")
        volume = client.get(f"/v1/jobs/{job}/viewer/volume")
        mask = client.get(f"/v1/jobs/{job}/viewer/mask")
    assert info.status_code == 200, info.text
    body = info.json()
    assert body["notice"] == "Research use, not for clinical diagnosis."
    assert body["geometry"]["shape_zyx"] == list(result.hu.shape)
    assert body["volume"] == {"url": f"/v1/jobs/{job}/viewer/volume", "format": "npy",
                              "encoding": "deflate-raw", "dtype": "int16",
                              "bytes": body["volume"]["bytes"]}
    assert volume.status_code == 200 and volume.headers["x-lungcad-encoding"] == "deflate-raw"
    assert volume.headers["cache-control"] == "private, no-store"
    hu = inflate_npy(volume.content)
    assert hu.dtype == np.int16 and np.array_equal(hu, result.hu)
    assert int(volume.headers["x-lungcad-inflated-length"]) > hu.nbytes
    assert len(volume.content) < hu.nbytes * 0.75  # compressed (noisy phantom: ~50 %)
    assert np.array_equal(inflate_npy(mask.content), result.lungs)


def test_viewer_findings_are_placed_in_the_grid(gateway: Gateway, synthetic_case: Case) -> None:
    with gateway.client() as client:
        body = client.get(f"/v1/jobs/{synthetic_case.job_id}/viewer").json()
    grid = Geometry.from_dict(body["geometry"])
    assert [f["finding"]["id"] for f in body["findings"]] == synthetic_case.finding_ids
    for f in body["findings"]:
        expected = grid.world_to_index(f["finding"]["center_mm"])
        assert np.allclose(f["index_zyx"], expected, atol=0.01)
        assert grid.contains_index(expected)
        assert f["radius_vox"][0] == pytest.approx(f["finding"]["diameter_mm"] / 2)
        assert f["key_images"] == [f"/v1/jobs/{synthetic_case.job_id}/artifacts/keyimages/"
                                   f"{f['finding']['id']}_{plane}.png"
                                   for plane in ("axial", "coronal", "sagittal")]
    assert [d["name"] for d in body["downloads"]] == ["findings.json"]
    assert body["case"]["lung_rads"]["category"] in ("4A", "4B", "4X")


def test_another_tenants_case_answers_404(gateway: Gateway, synthetic_case: Case) -> None:
    other = gateway.new_key("hospital-b")
    job = synthetic_case.job_id
    with gateway.client(key=other) as client:
        for path in ("viewer", "viewer/volume", "viewer/mask", "feedback"):
            response = client.get(f"/v1/jobs/{job}/{path}")
            assert response.status_code == 404, path
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["code"] == "job_not_found"
        response = client.post(f"/v1/jobs/{job}/feedback", json={"action": "accept",
                                                                  "finding_id": "F1"})
        assert response.status_code == 404
        assert client.get("/v1/worklist").json()["count"] == 0
    with gateway.client(key=None) as client:
        assert client.get(f"/v1/jobs/{job}/viewer/volume").status_code == 401


def test_viewer_waits_for_preprocessing(gateway: Gateway, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.factories import ct_series

    ct_series(tmp_path / "s", n=3)
    job = upload(gateway, tmp_path / "s")
    with gateway.client() as client:
        response = client.get(f"/v1/jobs/{job['id']}/viewer")
    assert response.status_code == 409
    assert response.json()["code"] == "viewer_not_ready"
    assert response.json()["state"] in ("queued", "preprocessing")


def test_worklist_summarises_findings_sorts_and_filters(gateway: Gateway, synthetic_case: Case,
                                                        tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.factories import ct_series

    ct_series(tmp_path / "pending", n=3, patient_id="PENDING-7")
    upload(gateway, tmp_path / "pending")
    with gateway.client() as client:
        page = client.get("/v1/worklist").json()
        assert page["count"] == 2
        done = next(r for r in page["data"] if r["job"]["id"] == synthetic_case.job_id)
        assert done["nodules"] == 4 and done["lung_rads"] == "4B"
        assert done["risk"] == pytest.approx(0.6)
        pending = next(r for r in page["data"] if r["job"]["id"] != synthetic_case.job_id)
        assert pending["nodules"] is None and pending["lung_rads"] is None
        by_risk = client.get("/v1/worklist", params={"sort": "risk", "order": "desc"}).json()
        assert by_risk["data"][0]["job"]["id"] == synthetic_case.job_id
        by_risk_asc = client.get("/v1/worklist", params={"sort": "risk", "order": "asc"}).json()
        assert by_risk_asc["data"][0]["job"]["id"] == synthetic_case.job_id  # nulls last
        rads = client.get("/v1/worklist", params={"lung_rads": ["4B", "4X"]}).json()
        assert [r["job"]["id"] for r in rads["data"]] == [synthetic_case.job_id]
        search = client.get("/v1/worklist", params={"q": "pending"}).json()
        assert [r["job"]["patient_id"] for r in search["data"]] == ["PENDING-7"]
        paged = client.get("/v1/worklist", params={"limit": 1, "offset": 1}).json()
        assert paged["count"] == 2 and len(paged["data"]) == 1
        assert client.get("/v1/worklist", params={"sort": "nope"}).status_code == 422


def test_worklist_labels_brock_risk_and_shows_category_1_without_nodules(
        gateway: Gateway, synthetic_case: Case,
        synthetic_study: tuple[Path, Preprocessed]) -> None:
    """The risk figure is the Brock probability (the CNN score is separate and named as a
    score); a study analysed without nodules is Lung-RADS 1, filterable as such."""
    path, result = synthetic_study
    empty = upload(gateway, path)
    publish_case(gateway, empty["id"], result, findings_document(result, [], empty["id"]))
    with gateway.runtime.sessions() as session:
        rows = session.scalars(select(FindingRow).where(
            FindingRow.job_id == synthetic_case.job_id)).all()
    with gateway.client() as client:
        page = client.get("/v1/worklist").json()
        items = {r["job"]["id"]: r for r in page["data"]}
        done = items[synthetic_case.job_id]
        assert done["brock_risk"] == pytest.approx(max(r.brock_probability for r in rows))
        assert done["malignancy_score"] == pytest.approx(
            max(r.malignancy_probability for r in rows))
        assert items[empty["id"]]["nodules"] == 0 and items[empty["id"]]["lung_rads"] == "1"
        ones = client.get("/v1/worklist", params={"lung_rads": ["1"]}).json()
        assert [r["job"]["id"] for r in ones["data"]] == [empty["id"]]
        by_brock = client.get("/v1/worklist", params={"sort": "brock_risk"}).json()
        assert by_brock["data"][0]["job"]["id"] == synthetic_case.job_id


def test_feedback_is_stored_with_who_and_when(gateway: Gateway, synthetic_case: Case) -> None:
    job = synthetic_case.job_id
    grid = Geometry.from_dict(synthetic_case.result.meta["geometry"])
    point = [int(n // 2) for n in grid.shape]
    with gateway.client() as client:
        accept = client.post(f"/v1/jobs/{job}/feedback", json={"action": "accept",
                                                               "finding_id": "F1"})
        reject = client.post(f"/v1/jobs/{job}/feedback", json={"action": "reject",
                                                               "finding_id": "F1",
                                                               "note": "vessel"})
        added = client.post(f"/v1/jobs/{job}/feedback", json={"action": "add",
                                                              "index_zyx": point})
        unknown = client.post(f"/v1/jobs/{job}/feedback", json={"action": "accept",
                                                                "finding_id": "F99"})
        outside = client.post(f"/v1/jobs/{job}/feedback", json={"action": "add",
                                                                "index_zyx": [-50, 0, 0]})
        both = client.post(f"/v1/jobs/{job}/feedback", json={"action": "accept"})
        listing = client.get(f"/v1/jobs/{job}/feedback").json()
    assert accept.status_code == reject.status_code == added.status_code == 201, added.text
    assert unknown.status_code == 422 and unknown.json()["code"] == "finding_not_found"
    assert outside.status_code == 422 and outside.json()["code"] == "point_outside_volume"
    assert both.status_code == 422
    entry = added.json()
    assert entry["finding_id"] == "M1" and entry["actor"].startswith("api-key ")
    assert np.allclose(entry["center_mm"], grid.index_to_world(point), atol=0.01)
    assert np.allclose(entry["index_zyx"], point, atol=0.01)
    column, row, slice_index = entry["center_voxel"]
    assert 0 <= slice_index < 96 and 0 <= row < 192 and 0 <= column < 192
    # the image number PACS shows at the point, read from the DICOM headers themselves
    number, sop_uid = instance_number_at(synthetic_case.folder, entry["center_mm"])
    assert (entry["instance_number"], entry["sop_instance_uid"]) == (number, sop_uid)
    assert number != slice_index + 1  # the series is numbered from the head down
    finding = next(f for f in synthetic_case.document.findings if f.id == "F1")
    assert accept.json()["instance_number"] == finding.instance_number
    assert finding.instance_number == instance_number_at(synthetic_case.folder,
                                                         finding.center_mm)[0]
    assert listing["verdicts"] == {"F1": "reject"}
    assert [e["action"] for e in listing["data"]] == ["accept", "reject", "add"]
    with gateway.runtime.sessions() as session:
        rows = session.scalars(select(FindingFeedback).where(FindingFeedback.job_id == job)).all()
        events = session.scalars(select(AuditEvent).where(AuditEvent.action == "write")).all()
    assert len(rows) == 3 and all(r.created_at and r.actor for r in rows)
    assert {e.resource for e in events} >= {f"jobs/{job}/feedback/add/M1"}


def test_an_added_nodule_can_be_withdrawn_once(gateway: Gateway, synthetic_case: Case) -> None:
    """Undo of "add missed nodule": a withdraw entry joins the trail (nothing is erased); only
    an added nodule, and only once."""
    job = synthetic_case.job_id
    grid = Geometry.from_dict(synthetic_case.result.meta["geometry"])
    point = [int(n // 2) for n in grid.shape]
    url = f"/v1/jobs/{job}/feedback"
    with gateway.client() as client:
        added = client.post(url, json={"action": "add", "index_zyx": point}).json()
        undo = client.post(url, json={"action": "withdraw", "finding_id": added["finding_id"]})
        again = client.post(url, json={"action": "withdraw", "finding_id": added["finding_id"]})
        finding = client.post(url, json={"action": "withdraw", "finding_id": "F1"})
        listing = client.get(url).json()
    assert undo.status_code == 201, undo.text
    assert undo.json()["finding_id"] == added["finding_id"]
    for refused in (again, finding):
        assert refused.status_code == 422 and refused.json()["code"] == "finding_not_found"
    assert [(e["action"], e["finding_id"]) for e in listing["data"]] == [
        ("add", added["finding_id"]), ("withdraw", added["finding_id"])]


def test_session_cookie_signs_in_and_guards_writes(gateway: Gateway,
                                                   synthetic_case: Case) -> None:
    job = synthetic_case.job_id
    with gateway.client(key=None) as client:
        assert client.get("/v1/session").status_code == 401
        bad = client.post("/v1/session", json={"api_key": "lc_nope_nope"})
        assert bad.status_code == 401 and "set-cookie" not in bad.headers
        response = client.post("/v1/session", json={"api_key": gateway.key, "reader": "Dr Ada"})
        assert response.status_code == 201, response.text
        cookie = response.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
        assert gateway.key not in response.headers["set-cookie"]
        csrf = response.json()["csrf_token"]
        assert client.get("/v1/session").json()["actor"].startswith("Dr Ada (key ")
        assert client.get(f"/v1/jobs/{job}/viewer").status_code == 200
        body = {"action": "accept", "finding_id": "F2"}
        refused = client.post(f"/v1/jobs/{job}/feedback", json=body)
        assert refused.status_code == 403 and refused.json()["code"] == "csrf_token_missing"
        ok = client.post(f"/v1/jobs/{job}/feedback", json=body, headers={"X-CSRF-Token": csrf})
        assert ok.status_code == 201 and ok.json()["actor"].startswith("Dr Ada")
        token = client.cookies["lungcad_session"]
        client.cookies.set("lungcad_session", token[:-3] + "AAA")
        assert client.get("/v1/worklist").json()["code"] == "invalid_session"
        client.cookies.set("lungcad_session", token)
        assert client.delete("/v1/session").status_code == 204
    with gateway.client(key=None) as client:
        client.cookies.set("lungcad_session", token)
        assert client.get("/v1/worklist").status_code == 200
        from lungcad.db.session import make_engine, make_sessionmaker, session_scope
        from lungcad_gateway.auth import revoke_key

        engine = make_engine(gateway.settings)
        with session_scope(make_sessionmaker(engine)) as session:
            assert revoke_key(session, gateway.key) == 1
        engine.dispose()
        revoked = client.get("/v1/worklist")
        assert revoked.status_code == 401 and revoked.json()["code"] == "invalid_session"


def test_dashboard_files_are_served_with_security_headers(gateway: Gateway) -> None:
    with gateway.client(key=None) as client:
        index = client.get("/")
        script = client.get("/src/main.js")
        assert client.get("/src/../package.json").status_code == 404
        assert client.get("/src/%2e%2e/package.json").status_code == 404
        assert client.get("/src/nothing.js").status_code == 404
    assert index.status_code == 200 and 'src="/src/main.js"' in index.text
    assert "script-src 'self'" in index.headers["content-security-policy"]
    assert index.headers["x-frame-options"] == "DENY"
    assert script.headers["content-type"].startswith("text/javascript")
