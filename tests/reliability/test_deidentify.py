"""De-identification of stored originals (``LUNGCAD_DEIDENTIFY_ORIGINALS``): after the preprocess
worker's scrub no value remains in the PS3.15 basic-profile attributes, UIDs map stably, the
input row keeps the received bytes' SHA-256 and records the scrubbed object's separately."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import select

from lungcad.db.models import JobInput
from lungcad_preprocess.deid import EMPTY, PATIENT_CHARACTERISTICS, REMOVE, replacement_uid
from tests.conftest import shared_data_dir, start_gateway
from tests.reliability.conftest import (
    ChaosWorker,
    fault_settings,
    preprocessed,
    report,
    submit,
    tiny_ct_zip,
    wait_jobs,
)

SALT = "reliability-test-salt-0123456789"


def leftovers(ds: pydicom.Dataset) -> list[str]:
    """Basic-profile attributes that still hold a value (recursively)."""
    found = []
    for elem in ds.iterall():
        if elem.keyword in REMOVE - PATIENT_CHARACTERISTICS:
            found.append(elem.keyword)
        elif elem.keyword in EMPTY - PATIENT_CHARACTERISTICS and elem.value not in ("", None):
            found.append(elem.keyword)
        elif elem.tag.is_private:
            found.append(str(elem.tag))
    return found


def test_worker_scrubs_stored_originals(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    settings = fault_settings(tmp_path, request, deidentify_originals=True, deid_uid_salt=SALT)
    server, gw = start_gateway(settings)
    worker = ChaosWorker(settings, "preprocess", tmp_path / "ledger.jsonl")
    payload = tiny_ct_zip(seed=4)
    original = {pydicom.dcmread(io.BytesIO(zipfile.ZipFile(io.BytesIO(payload)).read(n)))
                .SOPInstanceUID for n in zipfile.ZipFile(io.BytesIO(payload)).namelist()}
    try:
        with gw.client() as client:
            job_id = submit(client, payload).json()["id"]
            job = wait_jobs(client, [job_id], preprocessed, timeout=120)[job_id]
        assert job["state"] == "inferring", (job, worker.output()[-2000:])
        with gw.runtime.sessions() as session:
            row = session.scalars(select(JobInput).where(JobInput.job_id == job_id)).one()
        stored = gw.runtime.store.get_bytes(row.object_key)
        assert row.sha256 == hashlib.sha256(payload).hexdigest()  # as received
        assert row.deid_sha256 == hashlib.sha256(stored).hexdigest() != row.sha256
        assert "/input-deid/" in row.object_key
        assert gw.runtime.store.list_keys(f"jobs/{job_id}/input/") == []  # original gone
        archive = zipfile.ZipFile(io.BytesIO(stored))
        remaining, uids = [], set()
        for name in archive.namelist():
            raw = archive.read(name)
            ds = pydicom.dcmread(io.BytesIO(raw))
            remaining += leftovers(ds)
            assert raw[:128] == b"\0" * 128 and ds.PatientIdentityRemoved == "YES"
            assert str(ds.PatientName) == "" and "SYNTHETIC" not in raw.decode("latin-1")
            uids.add(ds.SOPInstanceUID)
        assert not remaining, remaining
        assert uids == {replacement_uid(u, SALT.encode()) for u in original}  # stable mapping
        report("deidentify_worker", files=len(archive.namelist()), leftovers=len(remaining),
               uid_mapping="stable", sha256_received_kept=True)
    finally:
        worker.stop()
        server.__exit__()


@pytest.mark.realdata
def test_shared_studies_leave_no_basic_profile_value(tmp_path: Path) -> None:
    from lungcad_preprocess.deid import deidentify_dataset

    studies = sorted((shared_data_dir() / "ct").glob("*.zip"))
    if not studies:
        pytest.skip(f"no shared studies in {shared_data_dir() / 'ct'}")
    checked = 0
    for study in studies:
        with zipfile.ZipFile(study) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")][:20]
            for name in names:
                try:
                    ds = pydicom.dcmread(io.BytesIO(zf.read(name)))  # in memory only
                except pydicom.errors.InvalidDicomError:
                    continue
                first, _ = deidentify_dataset(ds, SALT.encode())
                again, _ = deidentify_dataset(ds, SALT.encode())
                assert not leftovers(first), (study.name, name, leftovers(first))
                assert first.SOPInstanceUID == again.SOPInstanceUID != ds.SOPInstanceUID
                checked += 1
    report("deidentify_shared_studies", studies=len(studies), files=checked, leftovers=0)
