"""Job state transitions shared by the gateway and the workers.

Every transition is a conditional UPDATE in one transaction with its outbox row, so a job is
never lost between the database and the queue, and a stale or duplicate message cannot move a
job backwards. Workers hold a lease on the job while they run a stage.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from lungcad.celery_app import TASK_QUEUES
from lungcad.db.models import Job, JobState, OutboxKind, OutboxMessage
from lungcad.db.types import utcnow

log = logging.getLogger(__name__)
LEASE_S = 90.0  # the default of ``Settings.lease_s``; workers pass the configured value


def enqueue_stage(session: Session, job: Job, task: str) -> OutboxMessage:
    """Add the outbox row that dispatches ``task`` for ``job`` at its current attempt."""
    message = OutboxMessage(
        kind=OutboxKind.DISPATCH, job_id=job.id,
        payload={"task": task, "queue": TASK_QUEUES[task], "job_id": job.id,
                 "attempt": job.attempts},
    )
    session.add(message)
    return message


def enqueue_webhook(session: Session, job: Job) -> OutboxMessage | None:
    """Add the outbox row for the job's terminal-state webhook, if it has a callback URL."""
    if not job.callback_url:
        return None
    message = OutboxMessage(kind=OutboxKind.WEBHOOK, job_id=job.id,
                            payload={"event": f"job.{job.state}", "job_id": job.id})
    session.add(message)
    return message


def enqueue_results(session: Session, job: Job) -> OutboxMessage:
    """Add the outbox row that plans sending a succeeded job's SR and SEG to its tenant's
    PACS destinations (the relay finds none configured and just marks it published)."""
    message = OutboxMessage(kind=OutboxKind.DICOM, job_id=job.id, payload={"job_id": job.id})
    session.add(message)
    return message


@dataclass(frozen=True)
class Lease:
    job_id: str
    attempt: int
    token: str
    lease_s: float = LEASE_S


def claim(session: Session, job_id: str, attempt: int, from_states: set[JobState],
          to_state: JobState, stage: str, deadline_s: int,
          lease_s: float = LEASE_S) -> Lease | None:
    """Take the job for one stage. Returns None when the message is stale or another worker
    holds a live lease (the caller then drops the message without doing any work)."""
    now = utcnow()
    token = str(uuid.uuid4())
    values: dict[str, Any] = {
        "state": to_state, "stage": stage, "lease_token": token,
        "lease_expires_at": now + timedelta(seconds=lease_s),
        "deadline_at": now + timedelta(seconds=deadline_s), "updated_at": now,
    }
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.attempts == attempt, Job.deleted_at.is_(None),
               Job.state.in_([s.value for s in from_states]),
               or_(Job.lease_expires_at.is_(None), Job.lease_expires_at < now))
        .values(**values)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        return None
    session.execute(update(Job).where(Job.id == job_id, Job.started_at.is_(None))
                    .values(started_at=now))
    session.commit()
    return Lease(job_id, attempt, token, lease_s)


def _owned(lease: Lease) -> Any:
    return (Job.id == lease.job_id) & (Job.lease_token == lease.token) & (
        Job.attempts == lease.attempt)


def heartbeat(session: Session, lease: Lease, progress: int | None = None,
              stage: str | None = None) -> bool:
    """Extend the lease and report progress. False means the job was canceled or taken over."""
    values: dict[str, Any] = {"lease_expires_at": utcnow() + timedelta(seconds=lease.lease_s),
                              "updated_at": utcnow()}
    if progress is not None:
        values["progress"] = max(0, min(100, int(progress)))
    if stage is not None:
        values["stage"] = stage
    result = session.execute(update(Job).where(_owned(lease),
                                               Job.state.notin_(["canceled", "failed",
                                                                 "succeeded"]))
                             .values(**values))
    session.commit()
    return result.rowcount == 1  # type: ignore[attr-defined]


class LeaseKeeper:
    """Renews ``lease`` from a side thread every third of its length while a stage runs, so a
    long download, parse or upload never lets the lease lapse (the sweeper would then hand the
    job to a second worker while the first still runs it)."""

    def __init__(self, sessions: sessionmaker[Session], lease: Lease) -> None:
        self.sessions = sessions
        self.lease = lease
        self.lost = False  # the job was canceled or taken over
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"lease-{lease.job_id[:8]}")

    def _run(self) -> None:
        while not self._stop.wait(self.lease.lease_s / 3):
            try:
                with self.sessions() as session:
                    if not heartbeat(session, self.lease):
                        self.lost = True
            except Exception:  # noqa: BLE001 - the database is down: the next beat retries
                log.warning("lease heartbeat failed", extra={"job_id": self.lease.job_id})

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _locked_job(session: Session, lease: Lease) -> Job | None:
    return session.scalars(select(Job).where(_owned(lease)).with_for_update()).first()


def advance(session: Session, lease: Lease, to_state: JobState, next_task: str, stage: str,
            timings: dict[str, float] | None = None, details: dict[str, Any] | None = None,
            progress: int | None = None) -> bool:
    """Finish a stage and dispatch the next one, in one transaction with the outbox row."""
    job = _locked_job(session, lease)
    if job is None or JobState(job.state).is_terminal:
        session.rollback()
        return False
    job.state = to_state
    job.stage = stage
    job.lease_token = None
    job.lease_expires_at = None
    if progress is not None:
        job.progress = progress
    if timings:
        job.timings_s = {**(job.timings_s or {}), **timings}
    if details:
        job.details = {**(job.details or {}), **details}
    enqueue_stage(session, job, next_task)
    session.commit()
    return True


def succeed(session: Session, lease: Lease, timings: dict[str, float] | None = None,
            details: dict[str, Any] | None = None) -> bool:
    job = _locked_job(session, lease)
    if job is None or JobState(job.state).is_terminal:
        session.rollback()
        return False
    _finish(job, JobState.SUCCEEDED, timings, details)
    job.progress = 100
    job.stage = "done"
    enqueue_webhook(session, job)
    enqueue_results(session, job)
    session.commit()
    return True


def fail(session: Session, job_id: str, code: str, message: str,
         lease: Lease | None = None, timings: dict[str, float] | None = None) -> bool:
    """Fail a job with a specific code. With a lease, only the lease holder may fail it."""
    query = select(Job).where(Job.id == job_id)
    if lease is not None:
        query = select(Job).where(_owned(lease))
    job = session.scalars(query.with_for_update()).first()
    if job is None or JobState(job.state).is_terminal:
        session.rollback()
        return False
    _finish(job, JobState.FAILED, timings, None)
    job.error_code = code
    job.error_message = message
    enqueue_webhook(session, job)
    session.commit()
    return True


def release(session: Session, lease: Lease) -> None:
    """Give the lease back without finishing (a transient error: the message will be retried)."""
    session.execute(update(Job).where(_owned(lease))
                    .values(lease_token=None, lease_expires_at=None))
    session.commit()


def _finish(job: Job, state: JobState, timings: dict[str, float] | None,
            details: dict[str, Any] | None) -> None:
    job.state = state
    job.finished_at = utcnow()
    job.deadline_at = None
    job.lease_token = None
    job.lease_expires_at = None
    if timings:
        job.timings_s = {**(job.timings_s or {}), **timings}
    if details:
        job.details = {**(job.details or {}), **details}
