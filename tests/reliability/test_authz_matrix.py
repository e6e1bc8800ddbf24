"""Authorization matrix: every API operation x {own tenant, other tenant, no key, wrong key,
revoked key}; lists never show another tenant's jobs; random job IDs never answer 200."""

from __future__ import annotations

import io
import random
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import httpx
import pydicom
import pytest

from lungcad.db.session import make_engine, make_sessionmaker, session_scope
from lungcad_gateway.auth import revoke_key
from tests.conftest import Gateway, start_gateway
from tests.factories import ct_series
from tests.gateway.test_dicomweb import related
from tests.reliability.conftest import prod_settings, report

# (method, path template, what it needs). Every /v1 operation of the OpenAPI document except
# /v1/session (not tenant data: checked in test_session_sign_in_matrix).
OPERATIONS = [
    ("POST", "/v1/jobs", "upload"),
    ("POST", "/v1/dicomweb/studies", "upload"),
    ("GET", "/v1/jobs", "list"),
    ("GET", "/v1/worklist", "list"),
    ("GET", "/v1/jobs/{job_id}", "job"),
    ("GET", "/v1/jobs/{job_id}/result", "job"),
    ("GET", "/v1/jobs/{job_id}/artifacts", "job"),
    ("GET", "/v1/jobs/{job_id}/artifacts/{name}", "job"),
    ("GET", "/v1/jobs/{job_id}/viewer", "job"),
    ("GET", "/v1/jobs/{job_id}/viewer/volume", "job"),
    ("GET", "/v1/jobs/{job_id}/viewer/mask", "job"),
    ("GET", "/v1/jobs/{job_id}/feedback", "job"),
    ("POST", "/v1/jobs/{job_id}/feedback", "job"),
    ("DELETE", "/v1/jobs/{job_id}", "job"),
    ("GET", "/v1/dicomweb/studies", "studies"),
    *[("GET", f"/v1/dicomweb/studies/{{study}}{tail}", "study") for tail in (
        "", "/series", "/instances", "/metadata", "/series/{series}", "/series/{series}/instances",
        "/series/{series}/metadata", "/series/{series}/instances/{sop}",
        "/series/{series}/instances/{sop}/metadata", "/series/{series}/instances/{sop}/frames/1",
        "/series/{series}/instances/{sop}/bulkdata/7FE00010")],
]
CALLERS = ["own", "other", "none", "wrong", "revoked"]


def _uids(parts: list[tuple[str, tuple[str, bytes]]]) -> dict[str, str]:
    """The study, series and SOP Instance UIDs of the first part of a study."""
    ds = pydicom.dcmread(io.BytesIO(parts[0][1][1]))
    return {"study": ds.StudyInstanceUID, "series": ds.SeriesInstanceUID,
            "sop": ds.SOPInstanceUID}


def _study(tmp_path: Path) -> list[tuple[str, tuple[str, bytes]]]:
    paths = ct_series(tmp_path / f"s{uuid.uuid4().hex[:6]}", n=2)
    return [("files", (p.name, p.read_bytes())) for p in paths]


def _ids(body: dict) -> set[str]:
    """Job IDs of a /v1/jobs or /v1/worklist page."""
    return {item.get("id") or item["job"]["id"] for item in body.get("data", [])}


def _call(client: httpx.Client, method: str, path: str, tmp_path: Path) -> httpx.Response:
    if method == "POST" and path == "/v1/jobs":
        return client.post(path, files=_study(tmp_path))
    if method == "POST" and path == "/v1/dicomweb/studies":
        body, kind = related([("application/dicom", data) for _, (_, data) in _study(tmp_path)])
        return client.post(path, content=body, headers={"Content-Type": kind})
    if method == "POST":
        return client.post(path, json={"action": "accept", "finding_id": "N1"})
    return client.request(method, path)


@pytest.fixture()
def two_tenants(tmp_path: Path, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    settings = prod_settings(tmp_path, request, rate_limit_per_s=0)
    server, gw = start_gateway(settings)
    try:
        yield gw
    finally:
        server.__exit__()


def _revoked_key(gw: Gateway) -> str:
    key = gw.new_key("hospital-a")
    engine = make_engine(gw.settings)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            assert revoke_key(session, key) == 1
    finally:
        engine.dispose()
    return key


def test_every_operation_for_every_caller(two_tenants: Gateway, tmp_path: Path) -> None:
    gw = two_tenants
    keys = {"own": gw.key, "other": gw.new_key("hospital-b"), "none": None,
            "wrong": "lc_0badc0de_" + "x" * 32, "revoked": _revoked_key(gw)}
    with gw.client() as own:
        job_ids, studies = [], []
        for _ in range(2):  # one to delete last, one for everything else
            parts = _study(tmp_path)
            response = own.post("/v1/jobs", files=parts)
            assert response.status_code == 202, response.text
            job_ids.append(response.json()["id"])
            studies.append(_uids(parts))
    matrix: dict[tuple[str, str], int] = {}
    failures = []
    for caller in ["other", "none", "wrong", "revoked", "own"]:  # own last: it deletes
        with gw.client(key=keys[caller]) as client:
            for method, template, kind in OPERATIONS:
                job_id = job_ids[1] if method == "DELETE" else job_ids[0]
                path = template.format(job_id=job_id, name="findings.json", **studies[0])
                response = _call(client, method, path, tmp_path)
                status = response.status_code
                matrix[(f"{method} {template}", caller)] = status
                body = response.json() if response.headers.get("content-type", "").startswith(
                    ("application/json", "application/problem+json")) else {}
                code = body.get("code") if isinstance(body, dict) else None
                expected: str
                ok: bool
                if caller == "none":
                    expected, ok = "401 missing_api_key", (status, code) == (401,
                                                                             "missing_api_key")
                elif caller in ("wrong", "revoked"):
                    expected, ok = "401 invalid_api_key", (status, code) == (401,
                                                                             "invalid_api_key")
                elif caller == "other" and kind == "job":
                    expected, ok = "404 job_not_found", (status, code) == (404, "job_not_found")
                elif caller == "other" and kind == "study":
                    expected, ok = "404 study_not_found", (status, code) == (404,
                                                                           "study_not_found")
                elif kind in ("study", "studies"):
                    found = status == 200 and (kind == "study" or studies[0]["study"] in {
                        s["0020000D"]["Value"][0] for s in response.json()})
                    expected = f"200 {'with' if caller == 'own' else 'without'} A's study"
                    ok = found if caller == "own" else (status == 200 and not found)
                elif caller == "other" and kind == "list":
                    ids = _ids(body)
                    expected, ok = "200 without A's jobs", status == 200 and not (
                        ids & set(job_ids))
                elif caller == "own" and kind == "list":
                    ids = _ids(body)
                    expected, ok = "200 with A's jobs", status == 200 and job_ids[0] in ids
                else:  # own job operations, and any tenant's upload
                    expected = "2xx, or a state-dependent 4xx that is not an auth refusal"
                    ok = status < 500 and status not in (401, 403) and code != "job_not_found"
                if not ok:
                    failures.append((caller, method, template, status, code, expected))
    table = Counter((caller, status) for (_, caller), status in matrix.items())
    report("authz_matrix", operations=len(OPERATIONS), callers=len(CALLERS),
           cells=len(matrix), failures=len(failures),
           statuses={f"{c}:{s}": n for (c, s), n in sorted(table.items())})
    assert not failures, failures


def test_session_sign_in_matrix(two_tenants: Gateway) -> None:
    gw = two_tenants
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        cases = {"own": (gw.key, 201), "wrong": ("lc_0badc0de_" + "y" * 32, 401),
                 "revoked": (_revoked_key(gw), 401)}
        for caller, (key, expected) in cases.items():
            response = client.post("/v1/session", json={"api_key": key})
            assert response.status_code == expected, (caller, response.text)
        client.cookies.clear()
        assert client.get("/v1/session").status_code == 401


def _random_ids(gw: Gateway, count: int) -> None:
    rng = random.Random(7)
    templates = [t for _, t, kind in OPERATIONS if kind == "job"]
    statuses: Counter[int] = Counter()
    with gw.client() as client:
        for i in range(count):
            job_id = str(uuid.UUID(int=rng.getrandbits(128), version=4)) if i % 10 else (
                rng.choice(["0", "../jobs", "%2e%2e", "' OR 1=1 --", "x" * 300]))
            template = templates[i % len(templates)]
            method = "DELETE" if template == "/v1/jobs/{job_id}" and i % 3 == 0 else "GET"
            path = template.format(job_id=quote(job_id, safe=""), name="findings.json")
            response = client.request(method, path)
            statuses[response.status_code] += 1
    report("authz_random_ids", requests=count, statuses=dict(statuses))
    assert statuses[200] == 0 and not any(s >= 500 for s in statuses), statuses


def test_random_job_ids_never_answer_200(two_tenants: Gateway) -> None:
    _random_ids(two_tenants, 1_000)


@pytest.mark.soak
def test_random_job_ids_never_answer_200_soak(two_tenants: Gateway) -> None:
    _random_ids(two_tenants, 10_000)
