"""The outbox relay and the sweeper.

Relay: publishes committed outbox rows (Celery dispatches, webhooks) and marks them published.
A crash between publish and mark re-publishes the row; workers drop the duplicate because they
claim a job only for its current attempt and only while no live lease exists.

Broker loss: the relay keeps a sentinel key in Redis. When it is gone (Redis restarted without
persistence, or was flushed) the queued messages went with it, so the current dispatch of every
job waiting in a queue is written to the outbox again (same attempt: a copy that survived is
dropped by the claim).

Sweeper: a job whose stage deadline passed, or whose worker stopped renewing its lease (killed,
out of memory, host lost), is re-dispatched with attempts + 1, or failed with
``deadline_exceeded`` once ``max_attempts`` is reached.
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from lungcad.celery_app import TASK_INFERENCE, TASK_PREPROCESS
from lungcad.db.models import (
    Artifact,
    DicomDelivery,
    Job,
    JobState,
    OutboxKind,
    OutboxMessage,
    Tenant,
    WebhookAttempt,
)
from lungcad.db.types import utcnow
from lungcad.jobs import enqueue_stage, enqueue_webhook
from lungcad_gateway.dicom.sender import send as send_dicom
from lungcad_gateway.retention import UnreferencedSweeper, purge_expired
from lungcad_gateway.runtime import Runtime
from lungcad_gateway.webhook_secrets import signing_secrets
from lungcad_gateway.webhooks import deliver, event_body

log = logging.getLogger(__name__)
BATCH = 50
RETENTION_INTERVAL_S = 3600.0
BROKER_EPOCH_KEY = "lungcad:broker-epoch"
DISPATCH_RETRY_MAX_S = 30.0
RESULT_OBJECTS = ("seg.dcm", "sr.dcm")  # the artifacts sent back to the PACS


def _pending(session: Session, kind: OutboxKind, locking: bool) -> list[OutboxMessage]:
    query = (select(OutboxMessage)
             .where(OutboxMessage.kind == kind, OutboxMessage.published_at.is_(None),
                    OutboxMessage.gave_up_at.is_(None), OutboxMessage.available_at <= utcnow())
             .order_by(OutboxMessage.id).limit(BATCH))
    if locking:
        query = query.with_for_update(skip_locked=True)
    return list(session.scalars(query))


def backoff(attempts: int, base_s: float, max_s: float) -> timedelta:
    """Exponential backoff after ``attempts`` failed tries: base, 2 x base, ... at most max."""
    return timedelta(seconds=min(max_s, base_s * 2 ** (attempts - 1)))


class Relay:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self._locking = not self.settings.is_sqlite
        self._http = httpx.Client(timeout=self.settings.webhook_timeout_s, follow_redirects=False)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._redis: Any = None

    # -- dispatch ------------------------------------------------------------------------------
    def publish_dispatches(self) -> int:
        published = 0
        with self.runtime.sessions() as session:
            for message in _pending(session, OutboxKind.DISPATCH, self._locking):
                payload = message.payload
                try:
                    self.runtime.celery.send_task(
                        payload["task"], args=[payload["job_id"], payload["attempt"]],
                        # The default exchange routes by queue name alone: no binding table
                        # to go stale, and a message can only land in its own queue.
                        queue=payload["queue"], exchange="", routing_key=payload["queue"],
                        task_id=f"{payload['job_id']}.{payload['task']}.{payload['attempt']}",
                        retry=False)
                except Exception as exc:  # noqa: BLE001 - broker down: retry the row later
                    message.attempts += 1
                    message.last_error = f"{type(exc).__name__}: {exc}"[:1000]
                    delay = min(DISPATCH_RETRY_MAX_S, 0.5 * 2 ** min(message.attempts, 6))
                    message.available_at = utcnow() + timedelta(seconds=delay)
                    log.warning("dispatch of job %s failed: %s", message.job_id, exc)
                    break
                message.published_at = utcnow()
                message.attempts += 1
                published += 1
            session.commit()
        return published

    # -- webhooks ------------------------------------------------------------------------------
    def deliver_webhooks(self) -> int:
        delivered = 0
        settings = self.settings
        with self.runtime.sessions() as session:
            for message in _pending(session, OutboxKind.WEBHOOK, self._locking):
                job = session.get(Job, message.job_id)
                if job is None or not job.callback_url:
                    message.gave_up_at = utcnow()
                    message.last_error = "job or callback URL gone"
                    continue
                tenant = session.get(Tenant, job.tenant_id)
                assert tenant is not None
                body = event_body(job, message.id)
                event = message.payload.get("event", f"job.{job.state}")
                result = deliver(self._http, job.callback_url, signing_secrets(tenant), body,
                                 event, message.id, settings.webhook_allow_networks)
                message.attempts += 1
                session.add(WebhookAttempt(
                    outbox_id=message.id, job_id=job.id, url=job.callback_url, event=event,
                    attempt=message.attempts, status_code=result.status_code,
                    error=result.error, duration_ms=result.duration_ms))
                if result.ok:
                    message.published_at = utcnow()
                    delivered += 1
                elif message.attempts >= settings.webhook_max_attempts:
                    message.gave_up_at = utcnow()
                    message.last_error = result.error
                else:
                    message.last_error = result.error
                    message.available_at = utcnow() + backoff(
                        message.attempts, settings.webhook_backoff_base_s,
                        settings.webhook_backoff_max_s)
                session.commit()
        return delivered

    # -- results back to PACS -----------------------------------------------------------------
    def plan_dicom_deliveries(self) -> int:
        """One pending delivery per destination of a succeeded job's tenant."""
        planned = 0
        with self.runtime.sessions() as session:
            for message in _pending(session, OutboxKind.DICOM, self._locking):
                job = session.get(Job, message.job_id)
                tenant = session.get(Tenant, job.tenant_id) if job is not None else None
                names = self.settings.dicom_destinations.get(tenant.name, []) if tenant else []
                existing = set(session.scalars(select(DicomDelivery.destination).where(
                    DicomDelivery.job_id == message.job_id))) if names else set()
                for destination in names:
                    if destination not in existing:
                        session.add(DicomDelivery(job_id=message.job_id,
                                                  destination=destination, state="pending",
                                                  attempts=0, history=[]))
                        planned += 1
                message.attempts += 1
                message.published_at = utcnow()
            session.commit()
        return planned

    def send_dicom_deliveries(self) -> int:
        """C-STORE the SR and SEG of each due delivery; every attempt is recorded."""
        settings = self.settings
        sent = 0
        with self.runtime.sessions() as session:
            query = (select(DicomDelivery)
                     .where(DicomDelivery.state == "pending",
                            DicomDelivery.available_at <= utcnow())
                     .order_by(DicomDelivery.id).limit(BATCH))
            if self._locking:
                query = query.with_for_update(skip_locked=True)
            for delivery in session.scalars(query):
                artifacts = session.scalars(select(Artifact).where(
                    Artifact.job_id == delivery.job_id,
                    Artifact.name.in_(RESULT_OBJECTS)).order_by(Artifact.name)).all()
                job = session.get(Job, delivery.job_id)
                if job is None or job.deleted_at is not None or not artifacts:
                    result_ok, status = False, "no SR or SEG to send (deleted, or no DICOM input)"
                    final = True
                else:
                    try:
                        objects = [self.runtime.store.get_bytes(a.object_key) for a in artifacts]
                        outcome = send_dicom(delivery.destination, settings.dicom_ae_title,
                                             objects, settings.dicom_delivery_timeout_s)
                        result_ok, status = outcome.ok, outcome.status
                    except Exception as exc:  # noqa: BLE001 - recorded; retried like a refusal
                        result_ok, status = False, f"{type(exc).__name__}: {exc}"[:500]
                    final = False
                now = utcnow()
                delivery.attempts += 1
                delivery.last_status = status[:500]
                delivery.updated_at = now
                delivery.history = [*delivery.history, {"at": now.isoformat(),
                                                        "attempt": delivery.attempts,
                                                        "ok": result_ok, "status": status}]
                if result_ok:
                    delivery.state = "delivered"
                    sent += 1
                elif final or delivery.attempts >= settings.dicom_delivery_max_attempts:
                    delivery.state = "delivery_failed"
                    log.warning("results of job %s not delivered to %s: %s", delivery.job_id,
                                delivery.destination, status)
                else:
                    delivery.available_at = now + backoff(
                        delivery.attempts, settings.dicom_delivery_backoff_base_s,
                        settings.dicom_delivery_backoff_max_s)
                session.commit()
        return sent

    def deliver_results(self) -> int:
        self.plan_dicom_deliveries()
        return self.send_dicom_deliveries()

    # -- broker loss ---------------------------------------------------------------------------
    def recover_lost_broker(self) -> int:
        """Re-dispatch waiting jobs when the broker lost its messages; returns how many."""
        if not self.settings.broker_url.startswith(("redis://", "rediss://")):
            return 0  # the file broker lives on disk with the data
        if self._redis is None:
            import redis

            self._redis = redis.Redis.from_url(self.settings.broker_url,
                                               socket_connect_timeout=1, socket_timeout=2)
        if not self._redis.set(BROKER_EPOCH_KEY, str(uuid.uuid4()), nx=True):
            return 0  # the sentinel survived: so did the queues
        now = utcnow()
        waiting = (Job.lease_token.is_(None) | (Job.lease_expires_at < now))
        with self.runtime.sessions() as session:
            query = select(Job).where(Job.deleted_at.is_(None), waiting, Job.state.in_(
                [JobState.QUEUED.value, JobState.PREPROCESSING.value, JobState.INFERRING.value]))
            count = 0
            for job in session.scalars(query):
                task = TASK_INFERENCE if job.state == JobState.INFERRING else TASK_PREPROCESS
                enqueue_stage(session, job, task)
                count += 1
            session.commit()
        if count:
            log.warning("broker state lost (sentinel missing): %d waiting jobs re-dispatched",
                        count)
            self.runtime.wake_relay.set()
        return count

    def sweep_and_recover(self) -> tuple[int, int]:
        try:
            self.recover_lost_broker()
        except Exception:  # noqa: BLE001 - broker down: the next round tries again
            log.warning("broker sentinel check failed", exc_info=True)
        return self.sweep()

    # -- sweeper -------------------------------------------------------------------------------
    def sweep(self) -> tuple[int, int]:
        """Returns (re-dispatched, failed)."""
        redispatched = failed = 0
        settings = self.settings
        now = utcnow()
        running = [JobState.PREPROCESSING.value, JobState.INFERRING.value]
        active = [JobState.QUEUED.value, *running]
        with self.runtime.sessions() as session:
            lease_lost = (Job.state.in_(running) & Job.lease_token.is_not(None)
                          & (Job.lease_expires_at < now))
            query = (select(Job).where(Job.state.in_(active),
                                       or_(Job.deadline_at < now, lease_lost))
                     .order_by(Job.deadline_at).limit(BATCH))
            if self._locking:
                query = query.with_for_update(skip_locked=True)
            for job in session.scalars(query):
                if job.lease_expires_at is not None and job.lease_expires_at > now:
                    continue  # a live worker still holds it; its heartbeat proves progress
                lost = job.lease_token is not None and job.lease_expires_at is not None
                if job.attempts >= settings.max_attempts:
                    job.state = JobState.FAILED
                    job.finished_at = now
                    if lost:
                        job.error_code = "worker_lost"
                        job.error_message = (f"The worker running the {job.stage} stage stopped "
                                             f"(crashed or was killed) on each of "
                                             f"{job.attempts} attempts.")
                    else:
                        job.error_code = "deadline_exceeded"
                        job.error_message = (f"The job did not finish its {job.stage} stage in "
                                             f"{job.attempts} attempts.")
                    job.lease_token = None
                    job.lease_expires_at = None
                    enqueue_webhook(session, job)
                    failed += 1
                else:
                    task = TASK_INFERENCE if job.state == JobState.INFERRING else TASK_PREPROCESS
                    if task == TASK_PREPROCESS:
                        job.state = JobState.QUEUED
                    job.attempts += 1
                    job.lease_token = None
                    job.lease_expires_at = None
                    job.deadline_at = now + timedelta(seconds=settings.stage_deadline_s)
                    enqueue_stage(session, job, task)
                    redispatched += 1
                    log.warning("re-dispatching job %s (attempt %d)", job.id, job.attempts)
            session.commit()
        return redispatched, failed

    # -- loops ---------------------------------------------------------------------------------
    def _loop(self, step, interval: float, wake: threading.Event | None) -> None:  # type: ignore[no-untyped-def]
        while not self._stop.is_set():
            try:
                step()
            except Exception:  # noqa: BLE001 - keep relaying after a transient failure
                log.exception("relay step %s failed", getattr(step, "__name__", step))
            if wake is not None:
                wake.wait(interval)
                wake.clear()
            else:
                self._stop.wait(interval)

    def purge_expired(self) -> int:
        return purge_expired(self.runtime)

    def start(self) -> None:
        s = self.settings
        specs = [(self.publish_dispatches, s.relay_interval_s, self.runtime.wake_relay),
                 (self.deliver_webhooks, s.webhook_poll_interval_s, None),
                 (self.deliver_results, s.dicom_delivery_poll_interval_s, None),
                 (self.sweep_and_recover, s.sweep_interval_s, None)]
        if s.retention_days > 0:
            specs.append((self.purge_expired, RETENTION_INTERVAL_S, None))
        if s.unreferenced_sweep_interval_s > 0:
            specs.append((UnreferencedSweeper(self.runtime).sweep,
                          s.unreferenced_sweep_interval_s, None))
        for step, interval, wake in specs:
            thread = threading.Thread(target=self._loop, args=(step, interval, wake),
                                      name=f"relay-{step.__name__}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self.runtime.wake_relay.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._http.close()
        if self._redis is not None:
            self._redis.close()
