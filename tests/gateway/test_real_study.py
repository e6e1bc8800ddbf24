"""A real TCIA study, uploaded as hospitals export it (a zipped DICOM folder)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import select

from lungcad.db.models import JobInput
from tests.conftest import Gateway, shared_data_dir

CT_DIR = shared_data_dir() / "ct"
STUDIES = sorted(CT_DIR.glob("*.zip")) if CT_DIR.is_dir() else []


@pytest.mark.realdata
@pytest.mark.skipif(not STUDIES, reason=f"real CT studies not found under {CT_DIR}")
@pytest.mark.parametrize("study", ["QIN-LSC-0088.zip", "LIDC-IDRI-0001.zip"])
def test_real_study_zip_is_stored_with_matching_checksums(gateway: Gateway, study: str) -> None:
    path = CT_DIR / study
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with gateway.client() as client, open(path, "rb") as handle:
        response = client.post("/v1/jobs", files=[("files", (path.name, handle,
                                                             "application/zip"))])
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["input_format"] == "zip"
    assert job["patient_id"] == path.stem
    assert job["inputs"][0]["sha256"] == digest
    with gateway.runtime.sessions() as session:
        stored = session.scalars(select(JobInput).where(JobInput.job_id == job["id"])).one()
    assert stored.original_name == path.name and path.name not in stored.object_key
    assert gateway.runtime.store.sha256(stored.object_key) == digest
    assert gateway.runtime.store.size(stored.object_key) == Path(path).stat().st_size
