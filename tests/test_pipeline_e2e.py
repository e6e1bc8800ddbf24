"""A study through the whole system: the API, the relay, a real worker process on the real
broker, storage and database, in both configurations."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import pytest

from lungcad import synthetic
from tests.conftest import Gateway, WorkerProcess

TERMINAL = {"succeeded", "failed", "canceled"}
WEIGHTS = Path(__file__).resolve().parents[1] / "services/inference/lungcad_inference/weights"
needs_weights = pytest.mark.skipif(not any(WEIGHTS.glob("detector*")),
                                   reason=f"no shipped detector weights in {WEIGHTS}")


def synthetic_zip(tmp_path: Path) -> bytes:
    folder = tmp_path / "dicom"
    case = synthetic.make_chest_ct(seed=5)
    synthetic.write_dicom_series(case.hu, case.geometry, folder, patient_age="064Y",
                                 patient_sex="M")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.glob("*.dcm")):
            zf.write(path, f"SYNTHETIC 1/CT series/{path.name}")
    return buffer.getvalue()


def wait_for(client, job_id: str, states: set[str], timeout: float) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    job = client.get(f"/v1/jobs/{job_id}").json()
    while job["state"] not in states and time.monotonic() < deadline:
        time.sleep(0.5)
        job = client.get(f"/v1/jobs/{job_id}").json()
    return job


@needs_weights
def test_synthetic_study_end_to_end(gateway: Gateway, tmp_path: Path) -> None:
    worker = WorkerProcess(gateway.settings)
    try:
        with gateway.client() as client:
            response = client.post("/v1/jobs", files=[("files", ("study.zip",
                                                                 synthetic_zip(tmp_path)))])
            assert response.status_code == 202, response.text
            job_id = response.json()["id"]
            job = wait_for(client, job_id, TERMINAL, timeout=240)
            assert job["state"] == "succeeded", (job, worker.output()[-3000:])
            assert job["progress"] == 100 and job["attempts"] == 1
            for key in ("preprocess_read", "preprocess_segment", "inference_detect"):
                assert key in job["timings_s"], job["timings_s"]
            result = client.get(f"/v1/jobs/{job_id}/result").json()
            assert result["schema_version"] == "1.0" and result["job_id"] == job_id
            assert result["lungs"]["left_ml"] > 500
            names = {a["name"] for a in client.get(f"/v1/jobs/{job_id}/artifacts")
                     .json()["data"]}
            assert {"findings.json", "overview.png", "sr.dcm"} <= names
            assert not {"volume", "lung_mask"} & names  # internal arrays stay internal
    finally:
        worker.stop()


def test_a_bad_study_fails_with_a_specific_code(gateway: Gateway, tmp_path: Path) -> None:
    """Two slices only: accepted by the gateway (it is a CT), refused by preprocessing."""
    folder = tmp_path / "few"
    case = synthetic.make_chest_ct(seed=1)
    synthetic.write_dicom_series(case.hu[:2], case.geometry.crop((0, 0, 0),
                                                                 (2, *case.hu.shape[1:])),
                                 folder)
    worker = WorkerProcess(gateway.settings)
    try:
        with gateway.client() as client:
            files = [("files", (p.name, p.read_bytes())) for p in sorted(folder.glob("*.dcm"))]
            job_id = client.post("/v1/jobs", files=files).json()["id"]
            job = wait_for(client, job_id, TERMINAL, timeout=120)
        assert job["state"] == "failed", (job, worker.output()[-3000:])
        assert job["error_code"] == "too_few_slices" and job["error_message"]
    finally:
        worker.stop()

