"""Per-process worker runtime: the Celery app the task modules register on, and lazily created
database and storage handles (one per worker process, created on first use, never at import)."""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from lungcad.celery_app import create_celery
from lungcad.db.models import JobState
from lungcad.db.session import make_engine, make_sessionmaker
from lungcad.jobs import Lease, claim, fail, release
from lungcad.settings import Settings, get_settings
from lungcad.storage import ObjectStore, make_store

log = logging.getLogger(__name__)
app = create_celery(get_settings(), include_tasks=True)


@lru_cache(maxsize=1)
def sessions() -> sessionmaker[Session]:
    return make_sessionmaker(make_engine(get_settings()))


@lru_cache(maxsize=1)
def store() -> ObjectStore:
    return make_store(get_settings())


CLAIM_RETRY_S = 5
CLAIM_RETRIES = 30  # about 2.5 minutes of database outage


def claim_or_retry(task: Any, session: Session, job_id: str, attempt: int,
                   from_states: set[JobState], to_state: JobState, stage: str,
                   settings: Settings) -> Lease | None:
    """Claim a job for a stage from inside a task. None: the message is stale, a duplicate, or
    the job is leased elsewhere (logged; the caller drops the message). While the database is
    down the task is retried every ``CLAIM_RETRY_S`` instead of losing the message."""
    try:
        lease = claim(session, job_id, attempt, from_states, to_state, stage=stage,
                      deadline_s=settings.stage_deadline_s, lease_s=settings.lease_s)
    except OperationalError as exc:
        session.rollback()
        raise task.retry(exc=exc, countdown=CLAIM_RETRY_S, max_retries=CLAIM_RETRIES) from exc
    if lease is None:
        log.info("%s message dropped (stale, duplicate or leased)", stage.split(":")[0],
                 extra={"job_id": job_id, "attempt": attempt})
    return lease


MAX_TRANSIENT_RETRIES = 3
RETRY_BACKOFF_S = (5, 30, 120)


def retry_transient(task: Any, session: Session, lease: Lease, exc: Exception) -> None:
    """A stage hit a transient error (storage or database briefly down): give the lease back
    and retry the task with backoff, or fail the job with ``transient_failure`` once the
    retries are spent. Returns only in that last case; otherwise raises Celery's Retry."""
    session.rollback()
    try:
        release(session, lease)
    except OperationalError:  # the lease then simply expires
        session.rollback()
    retries = task.request.retries
    if retries >= MAX_TRANSIENT_RETRIES:
        fail(session, lease.job_id, "transient_failure",
             f"Storage or database stayed unavailable: {exc}")
        return
    raise task.retry(exc=exc, countdown=RETRY_BACKOFF_S[retries],
                     max_retries=MAX_TRANSIENT_RETRIES) from exc
