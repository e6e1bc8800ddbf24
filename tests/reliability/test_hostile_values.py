"""Script in a study's PatientName, PatientID, StudyDescription and SeriesDescription, in the
upload's file name, a reader's name and a feedback note, run through the whole pipeline: every
response of the API (job, list, worklist, viewer, result, artifacts, SR, feedback, session,
problem+json errors, metrics, the OpenAPI pages) carries ``X-Content-Type-Options: nosniff``, none
served as HTML contains a payload unescaped, and the JSON ones hand the values back unchanged
(escaping belongs to the page that shows them: tests/frontend/test_dashboard_browser.py).
"""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import httpx
import pydicom
import pytest

from tests.conftest import start_gateway
from tests.reliability.conftest import (
    ChaosWorker,
    edit_zip,
    fault_settings,
    report,
    submit,
    tiny_ct_zip,
    wait_jobs,
)

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
PAYLOADS = (SCRIPT, IMG)
NON_HTML = ("application/json", "application/problem+json", "application/dicom", "image/png",
            "text/plain", "application/octet-stream")


def _hostile(ds: pydicom.Dataset) -> None:
    ds.PatientName = SCRIPT
    ds.PatientID = IMG
    ds.StudyDescription = SCRIPT + IMG
    ds.SeriesDescription = IMG + SCRIPT


def _responses(client: httpx.Client, job_id: str) -> dict[str, httpx.Response]:
    """Every response that could echo the values (and the error paths that echo input)."""
    base = f"/v1/jobs/{job_id}"
    finding = client.get(f"{base}/result").json()["findings"][0]["id"]
    out = {
        "job": client.get(base), "list": client.get("/v1/jobs"),
        "list?q": client.get("/v1/jobs", params={"q": SCRIPT}),
        "worklist": client.get("/v1/worklist"), "viewer": client.get(f"{base}/viewer"),
        "result": client.get(f"{base}/result"), "artifacts": client.get(f"{base}/artifacts"),
        "feedback POST": client.post(f"{base}/feedback", json={
            "action": "accept", "finding_id": finding, "note": SCRIPT + IMG}),
        "feedback": client.get(f"{base}/feedback"),
        "session POST": client.post("/v1/session", json={"api_key": client.headers[
            "authorization"].split()[1], "reader": SCRIPT + IMG}),
        "404 job": client.get(f"/v1/jobs/{quote(SCRIPT, safe='')}"),
        "404 artifact": client.get(f"{base}/artifacts/{quote(IMG, safe='')}"),
        "404 route": client.get(f"/{quote(SCRIPT, safe='')}"),
        "400 field": client.post("/v1/jobs", files=[("files", ("a.dcm", b"x"))],
                                 data={SCRIPT: IMG}),
        "422 query": client.get("/v1/jobs", params={"state": SCRIPT, "limit": IMG}),
        "422 file": client.post("/v1/jobs", files=[("files", (f"{IMG}.dcm", SCRIPT.encode()))]),
        "422 body": client.post(f"{base}/feedback", json={"action": SCRIPT, "note": IMG}),
        "401": httpx.get(f"{client.base_url}{base}", headers={"Authorization": f"Bearer {IMG}"}),
        "metrics": client.get("/metrics"), "openapi.json": client.get("/openapi.json"),
        "docs": client.get("/docs", params={"x": SCRIPT}),
        "redoc": client.get("/redoc", params={"x": SCRIPT}),
    }
    for artifact in out["artifacts"].json()["data"]:
        out[f"artifact {artifact['name']}"] = client.get(artifact["url"])
    return out


def test_script_in_dicom_and_fields_never_served_as_html(tmp_path: Path,
                                                         request: pytest.FixtureRequest) -> None:
    settings = fault_settings(tmp_path, request)
    server, gw = start_gateway(settings)
    worker = ChaosWorker(settings, "preprocess,inference", tmp_path / "ledger.jsonl")
    try:
        with gw.client() as client:
            accepted = submit(client, edit_zip(tiny_ct_zip(seed=5), _hostile), f"{IMG}.zip")
            assert accepted.status_code == 202, accepted.text
            job_id = accepted.json()["id"]
            job = wait_jobs(client, [job_id], lambda j: j["state"] == "succeeded", 240)[job_id]
            assert job["state"] == "succeeded", job
            responses = {"upload": accepted, **_responses(client, job_id)}
        types = {label: r.headers.get("content-type", "").split(";")[0]
                 for label, r in responses.items()}
        unsniffed = [label for label, r in responses.items()
                     if r.headers.get("x-content-type-options") != "nosniff"]
        echoed = [label for label, r in responses.items()
                  if any(p.encode() in r.content for p in PAYLOADS)]
        raw_html = [label for label in echoed if "html" in types[label]]
        server_errors = [label for label, r in responses.items() if r.status_code >= 500]
        sr_values = pydicom.dcmread(io.BytesIO(responses["artifact sr.dcm"].content))
        report("hostile_values", responses=len(responses), content_types=dict(Counter(
            types.values())), echoing_a_payload=len(echoed), echoed_in_html=len(raw_html),
               missing_nosniff=len(unsniffed), server_errors=len(server_errors),
               sr_patient_name=str(sr_values.PatientName))
        assert not server_errors, {k: responses[k].status_code for k in server_errors}
        assert not raw_html, raw_html
        assert not unsniffed, unsniffed
        assert all(t in NON_HTML for label, t in types.items()
                   if label not in ("docs", "redoc")), types
        # The values did reach the outputs (as data, unchanged), so the checks above had
        # something to find.
        assert job["series_description"] == IMG + SCRIPT and job["patient_id"] == IMG
        assert {"job", "list", "worklist", "feedback", "session POST"} <= set(echoed), echoed
        assert str(sr_values.PatientName) == SCRIPT
    finally:
        worker.stop()
        server.__exit__()
