"""Audit log: every read, write, export and delete of patient data is recorded (who, what, when,
outcome, address), refusals included; the application's database role cannot alter the rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.exc import DBAPIError

from lungcad.db.models import Artifact, AuditEvent, Job
from tests.conftest import Gateway
from tests.factories import ct_series
from tests.reliability.conftest import report


def _make_succeeded(gw: Gateway, job_id: str) -> None:
    """Give the job a findings document, as the inference worker would."""
    obj = gw.runtime.store.put_bytes(f"jobs/{job_id}/result/findings.json",
                                     json.dumps({"job_id": job_id}).encode(), "application/json")
    with gw.runtime.sessions() as session:
        session.add(Artifact(job_id=job_id, name="findings.json", object_key=obj.key,
                             content_type="application/json", size=obj.size, sha256=obj.sha256))
        job = session.get(Job, job_id)
        assert job is not None
        job.state = "succeeded"
        session.commit()


def test_every_patient_data_access_is_audited(gateway: Gateway, tmp_path: Path) -> None:
    paths = ct_series(tmp_path / "s", n=2)
    prefix = gateway.key.split("_")[1]
    with gateway.client() as client, gateway.client(key=None) as anonymous:
        job_id = client.post("/v1/jobs", files=[("files", (p.name, p.read_bytes()))
                                                for p in paths]).json()["id"]
        _make_succeeded(gateway, job_id)
        calls = [
            (client.get, f"/v1/jobs/{job_id}", "read", 200),
            (client.get, "/v1/jobs", "read", 200),
            (client.get, "/v1/worklist", "read", 200),
            (client.get, f"/v1/jobs/{job_id}/artifacts", "read", 200),
            (client.get, f"/v1/jobs/{job_id}/result", "export", 200),
            (client.get, f"/v1/jobs/{job_id}/artifacts/findings.json", "export", 200),
            (client.get, f"/v1/jobs/{job_id}/artifacts/nope.png", "export", 404),
            (anonymous.get, f"/v1/jobs/{job_id}", "read", 401),
            (client.delete, f"/v1/jobs/{job_id}", "delete", 200),
        ]
        for call, path, _, status in calls:
            assert call(path).status_code == status, path
    gateway.app.state.audit.flush()  # reads are written in batches (audit.FLUSH_S)
    with gateway.runtime.sessions() as session:
        events = session.scalars(select(AuditEvent).order_by(AuditEvent.created_at,
                                                             AuditEvent.id)).all()
    got = [(e.action, e.resource, e.outcome) for e in events]
    expected = [("write", f"/v1/jobs/{job_id}", 202)] + [
        (action, path, status) for _, path, action, status in calls]
    assert got == expected, got
    for event in events:
        assert event.address == "127.0.0.1" and event.created_at is not None
        if event.outcome == 401:
            assert event.actor == "anonymous" and event.tenant_id is None
        else:
            assert event.actor == f"api-key {prefix}" and event.tenant_id == gateway.tenant_id
    report(f"audit_events[{gateway.settings.is_sqlite and 'embedded' or 'production'}]",
           requests=len(calls) + 1, events=len(events),
           actions=sorted({e.action for e in events}))


def test_audit_rows_cannot_be_altered_by_the_application_role(gateway: Gateway) -> None:
    with gateway.client() as client:
        client.get("/v1/jobs")
    gateway.app.state.audit.flush()
    engine = create_engine(gateway.settings.database_url)  # the application's own credentials
    refused = []
    statements = ["UPDATE audit_events SET outcome = 200", "DELETE FROM audit_events"]
    if not gateway.settings.is_sqlite:
        statements.append("TRUNCATE audit_events")
    try:
        for statement in statements:
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
                conn.execute(text(statement))
            refused.append(statement.split()[0])
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT count(*) FROM audit_events")) == 1
    finally:
        engine.dispose()
    report(f"audit_append_only[{'embedded' if gateway.settings.is_sqlite else 'production'}]",
           refused=refused)


def test_flush_waits_for_the_batch_the_writer_is_committing(gateway: Gateway) -> None:
    """flush() used to return at once while the writer thread was still committing the batch it
    had taken, so events submitted before the call were not yet in the database."""
    import threading
    import time

    from sqlalchemy import event as sa_event

    from lungcad.db.types import utcnow
    from lungcad_gateway.audit import AuditWriter

    engine = gateway.runtime.engine
    writer = AuditWriter(lambda: gateway.runtime.sessions(), interval_s=3600)

    def slow_commit(_connection: object) -> None:
        time.sleep(0.5)

    writer.submit(AuditEvent(created_at=utcnow(), actor="test", action="read",
                             resource="/v1/jobs/flush-race", outcome=200))
    sa_event.listen(engine, "commit", slow_commit)
    try:
        first = threading.Thread(target=writer.flush)
        first.start()
        time.sleep(0.1)  # the first flush has taken the batch and is committing it
        writer.flush()
        with gateway.runtime.sessions() as session:
            found = session.scalars(select(AuditEvent).where(
                AuditEvent.resource == "/v1/jobs/flush-race")).all()
        first.join()
    finally:
        sa_event.remove(engine, "commit", slow_commit)
        writer.stop()
    assert len(found) == 1
