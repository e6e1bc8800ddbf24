"""Retention: data of jobs that ended before the cut-off is deleted; newer jobs are kept."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from lungcad.db.models import DicomInstance, Job, JobState, new_id
from lungcad.db.types import utcnow
from lungcad.settings import Settings
from lungcad_gateway.retention import UnreferencedSweeper, purge_expired
from lungcad_gateway.runtime import Runtime
from tests.conftest import start_gateway
from tests.factories import ct_series


def test_expired_job_data_is_purged(settings: Settings, tmp_path: Path) -> None:
    server, gateway = start_gateway(settings.model_copy(update={"retention_days": 30}),
                                    run_relay=False)
    try:
        ids = []
        with gateway.client() as client:
            for i in range(3):
                paths = ct_series(tmp_path / f"s{i}", n=2)
                ids.append(client.post("/v1/jobs", files=[
                    ("files", (p.name, p.read_bytes())) for p in paths]).json()["id"])
        runtime: Runtime = gateway.runtime
        with runtime.sessions() as session:
            ages = {ids[0]: 40, ids[1]: 10}  # days since the job ended; ids[2] still queued
            for job_id, days in ages.items():
                job = session.get(Job, job_id)
                job.state, job.finished_at = JobState.SUCCEEDED, utcnow() - timedelta(days=days)
            session.commit()
        with gateway.client() as client:  # the DICOMweb index of the three jobs
            assert len(client.get("/v1/dicomweb/studies").json()) == 3
        assert purge_expired(runtime) == 1
        with runtime.sessions() as session:  # no patient attributes left in the index
            indexed = set(session.scalars(select(DicomInstance.job_id)))
        assert indexed == {ids[1], ids[2]}
        assert purge_expired(runtime) == 0  # idempotent
        assert runtime.store.list_keys(f"jobs/{ids[0]}/") == []
        assert runtime.store.list_keys(f"jobs/{ids[1]}/") and runtime.store.list_keys(
            f"jobs/{ids[2]}/")
        with gateway.client() as client:
            assert client.get(f"/v1/jobs/{ids[0]}").json()["deleted"] is True
            assert client.get(f"/v1/jobs/{ids[0]}/result").json()["code"] == "job_deleted"
    finally:
        server.__exit__()


def test_zero_keeps_everything(settings: Settings) -> None:
    assert settings.retention_days == 0
    assert purge_expired(Runtime(settings)) == 0


def test_unreferenced_objects_are_deleted_on_the_second_sighting(settings: Settings,
                                                                 tmp_path: Path) -> None:
    """Parts left by an upload refused during a storage outage: no job row refers to them."""
    server, gateway = start_gateway(settings, run_relay=False)
    try:
        paths = ct_series(tmp_path / "s", n=2)
        with gateway.client() as client:
            job_id = client.post("/v1/jobs", files=[
                ("files", (p.name, p.read_bytes())) for p in paths]).json()["id"]
        store = gateway.runtime.store
        stray = new_id()
        store.put_bytes(f"jobs/{stray}/input/00000.dcm", paths[0].read_bytes())
        sweeper = UnreferencedSweeper(gateway.runtime)
        assert sweeper.sweep() == 0  # first sight: maybe an upload about to commit its row
        later = new_id()  # appears between the sweeps: only suspected at the second
        store.put_bytes(f"jobs/{later}/input/00000.dcm", b"x")
        assert sweeper.sweep() == 1
        assert store.list_keys(f"jobs/{stray}/") == []
        assert store.list_keys(f"jobs/{later}/") and len(store.list_keys(f"jobs/{job_id}/")) == 2
        assert sweeper.sweep() == 1 and store.list_keys(f"jobs/{later}/") == []
        assert len(store.list_keys(f"jobs/{job_id}/")) == 2
    finally:
        server.__exit__()
