"""Retention: data of jobs that ended before the cut-off is deleted; newer jobs are kept."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from lungcad.db.models import Job, JobState
from lungcad.db.types import utcnow
from lungcad.settings import Settings
from lungcad_gateway.retention import purge_expired
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
        assert purge_expired(runtime) == 1
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
