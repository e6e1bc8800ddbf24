"""Data retention: delete the stored studies and results of jobs that ended more than
``retention_days`` ago (0 keeps everything). The job row stays, with ``deleted_at`` set, as the
audit trail, exactly as after ``DELETE /v1/jobs/{id}``."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import delete, select

from lungcad.db.models import Artifact, Job, JobState
from lungcad.db.types import utcnow
from lungcad_gateway.runtime import Runtime

log = logging.getLogger(__name__)
BATCH = 100


def purge_expired(runtime: Runtime) -> int:
    """Delete the data of expired jobs; returns how many jobs were purged."""
    days = runtime.settings.retention_days
    if days <= 0:
        return 0
    cutoff = utcnow() - timedelta(days=days)
    terminal = [JobState.SUCCEEDED.value, JobState.FAILED.value, JobState.CANCELED.value]
    purged = 0
    with runtime.sessions() as session:
        jobs = session.scalars(select(Job).where(Job.state.in_(terminal),
                                                 Job.finished_at < cutoff,
                                                 Job.deleted_at.is_(None)).limit(BATCH)).all()
        for job in jobs:
            runtime.store.delete_prefix(f"jobs/{job.id}/")  # objects first: a crash re-runs
            session.execute(delete(Artifact).where(Artifact.job_id == job.id))
            job.deleted_at = utcnow()
            session.commit()
            purged += 1
            log.info("retention: purged job data", extra={"job_id": job.id})
    return purged
