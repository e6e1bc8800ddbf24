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
from lungcad.jobs import Lease, claim
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
