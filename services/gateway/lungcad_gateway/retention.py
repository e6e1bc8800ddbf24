"""Data retention: delete the stored studies and results of jobs that ended more than
``retention_days`` ago (0 keeps everything). The job row stays, with ``deleted_at`` set, as the
audit trail, exactly as after ``DELETE /v1/jobs/{id}``."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import delete, select

from lungcad.db.models import Artifact, Job, JobState
from lungcad.db.types import utcnow
from lungcad_gateway.dicomweb_index import forget_job
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
            forget_job(session, job.id)
            job.deleted_at = utcnow()
            session.commit()
            purged += 1
            log.info("retention: purged job data", extra={"job_id": job.id})
    return purged


class UnreferencedSweeper:
    """Deletes stored objects under ``jobs/<id>/`` that no job row refers to.

    They are the parts of an upload refused while the object store was failing: the gateway
    deletes what it stored before answering 503, and when that delete meets the same outage the
    parts stay behind, patient data with no job to find or expire them. An upload stores its
    parts a moment before it commits its row, so an id is deleted only when it was already
    unreferenced at the previous sweep (``interval`` seconds before), never on first sight.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._suspects: set[str] = set()

    def sweep(self) -> int:
        """One pass; returns how many job prefixes were deleted."""
        ids = {key.split("/")[1] for key in self.runtime.store.list_keys("jobs/")
               if key.count("/") >= 2}
        unreferenced = ids - self._known(ids)
        confirmed = unreferenced & self._suspects
        for job_id in sorted(confirmed):
            removed = self.runtime.store.delete_prefix(f"jobs/{job_id}/")
            log.warning("deleted %d stored objects of job id %s, which has no job row (an "
                        "upload refused during a storage outage)", removed, job_id)
        self._suspects = unreferenced - confirmed
        return len(confirmed)

    def _known(self, ids: set[str]) -> set[str]:
        known: set[str] = set()
        ordered = sorted(ids)
        with self.runtime.sessions() as session:
            for start in range(0, len(ordered), 500):
                chunk = ordered[start:start + 500]
                known.update(session.scalars(select(Job.id).where(Job.id.in_(chunk))))
        return known
