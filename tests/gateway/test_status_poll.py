"""GET /v1/jobs/{id}, the status poll. On Postgres its common case is one asyncpg query on the
event loop, on SQLite a worker-thread read: either way it gives the same document as the list
and the same refusals as every other route."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
import pytest
from sqlalchemy import make_url, select

from lungcad.db.models import AuditEvent, Job
from lungcad_gateway.auth import hash_key, revoke_key
from lungcad_gateway.status_reader import APPLICATION_NAME, StatusReader, asyncpg_dsn
from tests.conftest import Gateway, free_port, make_settings, start_gateway
from tests.factories import ct_series


def _submit(gateway: Gateway, tmp_path: Path) -> dict:
    files = [("files", (p.name, p.read_bytes())) for p in ct_series(tmp_path / "s", n=2)]
    with gateway.client() as client:
        response = client.post("/v1/jobs", files=files)
    assert response.status_code == 202, response.text
    return response.json()  # type: ignore[no-any-return]


def test_poll_of_a_finished_job_matches_the_list(gateway: Gateway, tmp_path: Path) -> None:
    job = _submit(gateway, tmp_path)
    message = "Série illisible : coupe 3 manquante"
    with gateway.runtime.sessions() as session:
        row = session.get(Job, job["id"])
        row.state, row.stage, row.progress, row.attempts = "failed", "inference", 100, 2
        row.started_at = datetime(2026, 11, 27, 8, 0, 1, 250_000, tzinfo=UTC)
        row.finished_at = datetime(2026, 11, 27, 8, 0, 9, tzinfo=UTC)
        row.timings_s = {"preprocess": 1.25, "inference": 3.5}
        row.error_code, row.error_message = "processing_failed", message
        session.commit()
    with gateway.client() as client:
        polled = client.get(f"/v1/jobs/{job['id']}").json()
        listed = [j for j in client.get("/v1/jobs").json()["data"] if j["id"] == job["id"]]
    assert listed == [polled]
    assert polled["state"] == "failed" and polled["attempts"] == 2
    assert polled["error_message"] == message
    assert polled["timings_s"] == {"preprocess": 1.25, "inference": 3.5}
    assert datetime.fromisoformat(polled["started_at"]) == datetime(
        2026, 11, 27, 8, 0, 1, 250_000, tzinfo=UTC)
    assert polled["inputs"] == job["inputs"] and len(polled["inputs"]) == 2


def test_poll_refusals_match_every_route(gateway: Gateway, tmp_path: Path) -> None:
    job = _submit(gateway, tmp_path)
    revoked = gateway.new_key("hospital-a")
    with gateway.runtime.sessions() as session:
        assert revoke_key(session, revoked) == 1
        session.commit()
    with gateway.client(key=revoked) as client:
        response = client.get(f"/v1/jobs/{job['id']}")
        assert response.status_code == 401 and response.json()["code"] == "invalid_api_key"
    with gateway.client(key=gateway.new_key("hospital-b")) as other:
        response = other.get(f"/v1/jobs/{job['id']}")
        assert response.status_code == 404 and response.json()["code"] == "job_not_found"
    with gateway.client() as client:
        for job_id in ("00000000-0000-4000-8000-000000000000", "not-a-job", "%00",
                       job["id"].upper(), "x" * 3000):
            response = client.get(f"/v1/jobs/{job_id}")
            assert response.status_code == 404, (job_id[:40], response.text[:200])
            assert response.json()["code"] == "job_not_found"
        for suffix in ("/result", "/artifacts", "/viewer"):  # a NUL was a 500 on Postgres
            response = client.get(f"/v1/jobs/%00{suffix}")
            assert response.status_code == 404 and response.json()["code"] == "job_not_found"
        assert client.delete("/v1/jobs/%00").status_code == 404
    with gateway.runtime.sessions() as session:
        recorded = session.scalars(select(AuditEvent.resource).where(
            AuditEvent.resource == "/v1/jobs/%00", AuditEvent.outcome == 404)).all()
    assert len(recorded) == 2  # the GET and the DELETE, in the audit trail like any request


@pytest.mark.parametrize("mode", ["embedded", "production"])
def test_poll_takes_a_token_from_the_keys_rate_limit(mode: str, tmp_path: Path,
                                                     request: pytest.FixtureRequest) -> None:
    settings = make_settings(mode, tmp_path, request, rate_limit_per_s=1.0, rate_limit_burst=5)
    server, gw = start_gateway(settings)
    try:
        job = _submit(gw, tmp_path)  # one token
        with gw.client() as client:
            answers = [client.get(f"/v1/jobs/{job['id']}") for _ in range(8)]
        statuses = [r.status_code for r in answers]
        assert statuses[:4] == [200] * 4 and statuses.count(429) >= 3, statuses
        limited = answers[-1]
        assert limited.json()["code"] == "rate_limited"
        assert int(limited.headers["Retry-After"]) >= 1
    finally:
        server.__exit__()


def _status_connections(database_url: str, terminate: bool = False) -> int:
    url = make_url(database_url)
    with psycopg2.connect(host=url.host, port=url.port, user=url.username,
                          dbname=url.database) as admin, admin.cursor() as cur:
        action = "pg_terminate_backend(pid)" if terminate else "pid"
        cur.execute(f"SELECT {action} FROM pg_stat_activity "  # noqa: S608 - fixed text
                    "WHERE application_name = %s AND datname = current_database()",
                    (APPLICATION_NAME,))
        return len(cur.fetchall())


@pytest.mark.parametrize("mode", ["production"])
def test_poll_survives_the_database_closing_its_connections(gateway: Gateway,
                                                            tmp_path: Path) -> None:
    """A Postgres restart or an idle-connection reaper closes the reader's pooled connections:
    the next poll opens a new one, it does not answer 503."""
    job = _submit(gateway, tmp_path)
    url = gateway.settings.database_url
    with gateway.client() as client:
        for _ in range(3):
            assert client.get(f"/v1/jobs/{job['id']}").status_code == 200
        assert _status_connections(url) >= 1  # served by the event-loop reader
        assert _status_connections(url, terminate=True) >= 1
        answers = [client.get(f"/v1/jobs/{job['id']}") for _ in range(5)]
    assert [r.status_code for r in answers] == [200] * 5, answers[0].text
    assert all(r.json()["id"] == job["id"] for r in answers)
    assert _status_connections(url) >= 1


@pytest.mark.parametrize("mode", ["production"])
def test_reader_retries_on_a_connection_closed_under_it(gateway: Gateway,
                                                        tmp_path: Path) -> None:
    """The race the pool cannot see: the server closed the connection, but the event loop has
    not yet read the close when the next poll takes it from the pool."""
    job = _submit(gateway, tmp_path)
    url = gateway.settings.database_url
    reader = StatusReader(gateway.settings, asyncpg_dsn(url))  # type: ignore[arg-type]

    async def poll_twice() -> tuple[dict | None, dict | None]:
        try:
            first = await reader.job_row(hash_key(gateway.key), job["id"])
            _status_connections(url, terminate=True)  # blocks the loop: the close is unread
            return first, await reader.job_row(hash_key(gateway.key), job["id"])
        finally:
            await reader.close()

    with ThreadPoolExecutor(1) as thread:  # its own event loop, whatever this thread runs
        first, second = thread.submit(asyncio.run, poll_twice()).result()
    assert first is not None and second is not None
    assert first["id"] == second["id"] == job["id"] and second["tenant_id"] == gateway.tenant_id


def test_rate_limit_fails_open_when_redis_is_down(tmp_path: Path,
                                                  request: pytest.FixtureRequest) -> None:
    """The limiter protects capacity; it must not take the API down with it: with Redis gone,
    the poll (awaited check) and the list (threaded check) are let through, not limited."""
    settings = make_settings("production", tmp_path, request, rate_limit_per_s=0.1,
                             rate_limit_burst=1,
                             broker_url=f"redis://127.0.0.1:{free_port()}/0")
    server, gw = start_gateway(settings)
    try:
        job = _submit(gw, tmp_path)
        with gw.client() as client:
            polls = [client.get(f"/v1/jobs/{job['id']}").status_code for _ in range(3)]
            lists = [client.get("/v1/jobs").status_code for _ in range(3)]
        assert polls == [200] * 3 and lists == [200] * 3, (polls, lists)
    finally:
        server.__exit__()
