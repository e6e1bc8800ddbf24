"""Webhooks (signed, retried with backoff, every attempt recorded) and the deadline sweeper."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_network
from pathlib import Path

import pytest
from sqlalchemy import select

from lungcad import jobs
from lungcad.celery_app import TASK_PREPROCESS
from lungcad.db.models import Job, JobState, OutboxMessage, Tenant, WebhookAttempt
from lungcad.db.types import utcnow
from lungcad_gateway.webhooks import PREVIOUS_SIGNATURE_HEADER, SIGNATURE_HEADER, verify
from tests.conftest import Gateway, start_gateway
from tests.factories import ct_series


class Receiver:
    """A real HTTP endpoint on loopback that fails its first ``failures`` deliveries."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.received: list[tuple[dict[str, str], bytes, int]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = 500 if len(receiver.received) < receiver.failures else 204
                receiver.received.append((dict(self.headers), body, status))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def _submit(gateway: Gateway, tmp_path: Path, callback: str | None) -> str:
    paths = ct_series(tmp_path / "s", n=2)
    with gateway.client() as client:
        data = {"callback_url": callback} if callback else {}
        response = client.post("/v1/jobs", data=data,
                               files=[("files", (p.name, p.read_bytes())) for p in paths])
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _wait(predicate, timeout: float = 15.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture()
def fast_webhooks(settings):  # type: ignore[no-untyped-def]
    # The receiver is on loopback, which webhooks may reach only when allowed explicitly.
    server, gw = start_gateway(settings.model_copy(update={
        "webhook_backoff_base_s": 0.2, "webhook_max_attempts": 4, "webhook_poll_interval_s": 0.05,
        "webhook_allow_networks": [ip_network("127.0.0.0/8")]}))
    yield gw
    server.__exit__()


def test_terminal_state_fires_a_signed_webhook_retried_until_delivered(
        fast_webhooks: Gateway, tmp_path: Path) -> None:
    gateway = fast_webhooks
    receiver = Receiver(failures=2)
    try:
        job_id = _submit(gateway, tmp_path, receiver.url)
        with gateway.runtime.sessions() as session:
            assert jobs.fail(session, job_id, "no_ct_series", "No CT series in the upload.")
        # The attempt row is written after the receiver answered: wait for the rows themselves.
        def three_attempts() -> list[WebhookAttempt] | None:
            rows = _attempts(gateway, job_id)
            return rows if len(rows) >= 3 else None

        attempts = _wait(three_attempts, timeout=30)
        headers, body, status = receiver.received[-1]
        assert status == 204
        with gateway.runtime.sessions() as session:
            job = session.get(Job, job_id)
            secret = session.get(Tenant, job.tenant_id).webhook_secret
        assert verify(secret, body, headers[SIGNATURE_HEADER])
        assert not verify("another-secret", body, headers[SIGNATURE_HEADER])
        event = json.loads(body)
        assert event["event"] == "job.failed" and event["job"]["id"] == job_id
        assert event["job"]["error_code"] == "no_ct_series"
        assert [a.status_code for a in attempts] == [500, 500, 204]
        assert [a.attempt for a in attempts] == [1, 2, 3]
        gaps = [(b.created_at - a.created_at).total_seconds()
                for a, b in zip(attempts, attempts[1:], strict=False)]
        # exponential backoff, 0.2 s then 0.4 s: a retry is never early (a slow machine
        # only makes it later, so the bounds are from below)
        assert gaps[0] >= 0.2 - 0.01 and gaps[1] >= 0.4 - 0.01, gaps
    finally:
        receiver.close()


def _attempts(gateway: Gateway, job_id: str) -> list[WebhookAttempt]:
    with gateway.runtime.sessions() as session:
        return list(session.scalars(select(WebhookAttempt).where(
            WebhookAttempt.job_id == job_id).order_by(WebhookAttempt.id)))


def test_after_a_rotation_webhooks_carry_both_signatures_until_the_overlap_ends(
        fast_webhooks: Gateway, tmp_path: Path) -> None:
    from lungcad_gateway.webhook_secrets import rotate

    gateway = fast_webhooks
    receiver = Receiver()
    try:
        with gateway.runtime.sessions() as session:
            tenant = session.get(Tenant, gateway.tenant_id)
            old = tenant.webhook_secret
            rotate(tenant, overlap_s=3600)
            new = tenant.webhook_secret
            session.commit()
        (headers, body, _), = _delivered(gateway, tmp_path / "a", receiver, 1)
        assert verify(new, body, headers[SIGNATURE_HEADER])
        assert verify(old, body, headers[PREVIOUS_SIGNATURE_HEADER])
        assert not verify(old, body, headers[SIGNATURE_HEADER])

        with gateway.runtime.sessions() as session:
            session.get(Tenant, gateway.tenant_id).previous_webhook_secret_until = (
                utcnow() - timedelta(seconds=1))
            session.commit()
        (headers, body, _), = _delivered(gateway, tmp_path / "b", receiver, 2)[1:]
        assert verify(new, body, headers[SIGNATURE_HEADER])
        assert PREVIOUS_SIGNATURE_HEADER not in headers
    finally:
        receiver.close()


def _delivered(gateway: Gateway, tmp_path: Path, receiver: Receiver, count: int
               ) -> list[tuple[dict[str, str], bytes, int]]:
    """Submit a job calling ``receiver``, fail it, and wait until ``count`` deliveries (all
    jobs together) are recorded."""
    job_id = _submit(gateway, tmp_path, receiver.url)
    with gateway.runtime.sessions() as session:
        assert jobs.fail(session, job_id, "no_ct_series", "No CT series in the upload.")
    _wait(lambda: _attempts(gateway, job_id), timeout=30)
    assert len(receiver.received) == count
    return receiver.received


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9/hook", "http://localhost:9/hook", "http://[::1]/hook",
    "http://169.254.169.254/latest/meta-data/", "http://10.20.30.40/hook",
    "https://192.168.1.5:8443/hook", "http://[::ffff:127.0.0.1]/hook", "http://0.0.0.0/hook"])
def test_a_callback_to_a_non_public_address_is_refused_at_submit(
        gateway: Gateway, tmp_path: Path, url: str) -> None:
    """Loopback, link-local (cloud metadata), private and unspecified addresses, literal or
    resolved (``localhost``), are 422 ``callback_url_refused`` by default (the relay POSTed to
    127.0.0.1). Nothing is kept."""
    paths = ct_series(tmp_path / "s", n=2)
    with gateway.client() as client:
        response = client.post("/v1/jobs", data={"callback_url": url},
                               files=[("files", (p.name, p.read_bytes())) for p in paths])
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "callback_url_refused"
    assert "LUNGCAD_WEBHOOK_ALLOW_NETWORKS" in response.json()["detail"]
    with gateway.runtime.sessions() as session:
        assert session.scalars(select(Job)).all() == []


def test_a_callback_refused_at_send_time_is_recorded_and_not_sent(gateway: Gateway,
                                                                  tmp_path: Path) -> None:
    """The address is checked again at each send (a DNS answer can change after submit; a job
    may predate the check): the attempt is recorded as refused and nothing reaches the
    receiver."""
    receiver = Receiver()
    try:
        job_id = _submit(gateway, tmp_path, None)
        with gateway.runtime.sessions() as session:
            session.get(Job, job_id).callback_url = receiver.url
            session.commit()
            assert jobs.fail(session, job_id, "no_ct_series", "No CT series in the upload.")
        attempt = _wait(lambda: next(iter(_attempts(gateway, job_id)), None), timeout=30)
        assert attempt.status_code is None and attempt.error.startswith("refused: "), attempt.error
        assert "127.0.0.1 is a loopback address" in attempt.error
        assert receiver.received == []
    finally:
        receiver.close()


@pytest.mark.parametrize(("address", "allow", "refused"), [
    ("8.8.8.8", [], None), ("2606:4700::1", [], None),
    ("169.254.169.254", [], "link-local (cloud metadata)"), ("fd00:ec2::254", [], "private"),
    ("100.100.100.200", [], "non-public"), ("224.0.0.1", [], "multicast"),
    ("::ffff:10.0.0.1", [], "private"), ("10.20.1.2", ["10.20.0.0/16"], None),
    ("10.21.1.2", ["10.20.0.0/16"], "private"), ("::ffff:10.20.1.2", ["10.20.0.0/16"], None),
])
def test_refusal_of_an_address(address: str, allow: list[str], refused: str | None) -> None:
    from ipaddress import ip_address

    from lungcad_gateway.webhook_target import refusal

    assert refusal(ip_address(address), [ip_network(n) for n in allow]) == refused


def test_the_allow_list_is_a_typed_setting(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from lungcad.settings import Settings

    settings = Settings(_env_file=None, data_dir=tmp_path,  # type: ignore[call-arg]
                        webhook_allow_networks=["10.20.0.0/16", "fd12::/16"])
    assert settings.webhook_allow_networks == [ip_network("10.20.0.0/16"),
                                               ip_network("fd12::/16")]
    with pytest.raises(ValidationError):
        Settings(_env_file=None, data_dir=tmp_path,  # type: ignore[call-arg]
                 webhook_allow_networks=["not-a-network"])


def test_webhook_gives_up_after_max_attempts(fast_webhooks: Gateway, tmp_path: Path) -> None:
    gateway = fast_webhooks
    receiver = Receiver(failures=100)
    try:
        job_id = _submit(gateway, tmp_path, receiver.url)
        with gateway.client() as client:
            assert client.delete(f"/v1/jobs/{job_id}").json()["state"] == "canceled"

        def gave_up():  # type: ignore[no-untyped-def]
            with gateway.runtime.sessions() as session:
                return session.scalars(select(OutboxMessage).where(
                    OutboxMessage.job_id == job_id, OutboxMessage.kind == "webhook",
                    OutboxMessage.gave_up_at.is_not(None))).first()

        row = _wait(gave_up, timeout=20)
        assert row.attempts == 4 and len(receiver.received) == 4
        assert json.loads(receiver.received[0][1])["event"] == "job.canceled"
    finally:
        receiver.close()


def test_sweeper_redispatches_then_fails_a_stuck_job(gateway: Gateway, tmp_path: Path) -> None:
    job_id = _submit(gateway, tmp_path, None)
    runtime = gateway.runtime
    with runtime.sessions() as session:
        lease = jobs.claim(session, job_id, 1, {JobState.QUEUED}, JobState.PREPROCESSING,
                           "reading", 600)
        assert lease is not None
        # A second claim of the same attempt is refused while the lease lives.
        assert jobs.claim(session, job_id, 1, {JobState.PREPROCESSING}, JobState.PREPROCESSING,
                          "reading", 600) is None
        job = session.get(Job, job_id)
        job.deadline_at = utcnow() - timedelta(seconds=1)
        job.lease_expires_at = utcnow() - timedelta(seconds=1)  # the worker died
        session.commit()

    def redispatched():  # type: ignore[no-untyped-def]
        with runtime.sessions() as session:
            job = session.get(Job, job_id)
            return job if job.attempts == 2 else None

    job = _wait(redispatched)
    assert job.state == JobState.QUEUED
    with runtime.sessions() as session:
        messages = session.scalars(select(OutboxMessage).where(
            OutboxMessage.job_id == job_id, OutboxMessage.kind == "dispatch")
            .order_by(OutboxMessage.id)).all()
        assert [m.payload["attempt"] for m in messages] == [1, 2]
        assert all(m.payload["task"] == TASK_PREPROCESS for m in messages)
        # The stale attempt-1 message can no longer claim the job.
        assert jobs.claim(session, job_id, 1, {JobState.QUEUED}, JobState.PREPROCESSING,
                          "reading", 600) is None
        for _ in range(gateway.settings.max_attempts - 1):
            job = session.get(Job, job_id)
            job.deadline_at = utcnow() - timedelta(seconds=1)
            session.commit()
            before = job.attempts
            _wait(lambda b=before: (lambda j: j.attempts > b or j.state == "failed")(
                _reload(runtime, job_id)))

    final = _wait(lambda: (lambda j: j if j.state == "failed" else None)(_reload(runtime, job_id)))
    assert final.error_code == "deadline_exceeded"
    assert final.attempts == gateway.settings.max_attempts


def _reload(runtime, job_id: str) -> Job:  # type: ignore[no-untyped-def]
    with runtime.sessions() as session:
        return session.get(Job, job_id)


def test_lease_transitions(gateway: Gateway, tmp_path: Path) -> None:
    from lungcad.celery_app import TASK_INFERENCE

    job_id = _submit(gateway, tmp_path, None)
    with gateway.runtime.sessions() as session:
        lease = jobs.claim(session, job_id, 1, {JobState.QUEUED}, JobState.PREPROCESSING,
                           "reading", 600)
        assert jobs.heartbeat(session, lease, progress=30, stage="segmenting")
        assert jobs.advance(session, lease, JobState.INFERRING, TASK_INFERENCE,
                            "queued-inference", timings={"read": 1.5})
        job = session.get(Job, job_id)
        assert (job.state, job.progress, job.timings_s) == ("inferring", 30, {"read": 1.5})
        lease2 = jobs.claim(session, job_id, 1, {JobState.INFERRING}, JobState.INFERRING,
                            "detecting", 600)
        assert lease2 is not None
        assert not jobs.heartbeat(session, lease)  # the old lease is gone
        assert jobs.succeed(session, lease2, timings={"detect": 2.0})
        session.expire_all()
        job = session.get(Job, job_id)
        assert (job.state, job.progress, job.finished_at is not None) == ("succeeded", 100, True)
        assert not jobs.fail(session, job_id, "late", "too late")  # terminal stays terminal
