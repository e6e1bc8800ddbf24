"""The ``lungcad.preprocess`` Celery task: a thin adapter around :mod:`pipeline`.

claim the job -> download its inputs -> preprocess in an isolated child -> store the arrays and
metadata as internal artifacts -> advance the job to inference (one transaction with the outbox).
ProcessingError / InvalidInput fail the job with their code; transient storage or database
errors give the lease back and retry with backoff, a bounded number of times.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import delete
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from lungcad import jobs
from lungcad.celery_app import TASK_INFERENCE, TASK_PREPROCESS
from lungcad.db.models import Artifact, Job, JobState
from lungcad.errors import InvalidInput, ProcessingError, TransientError
from lungcad.settings import get_settings
from lungcad.storage import ObjectStore, StorageUnavailable
from lungcad.worker import app, claim_or_retry, retry_transient, sessions, store
from lungcad_preprocess.deid_inputs import deidentify_inputs
from lungcad_preprocess.inputs import materialise_inputs
from lungcad_preprocess.isolate import preprocess_isolated
from lungcad_preprocess.pipeline import PreprocessOptions
from lungcad_preprocess.store import ARTIFACTS, store_preprocessed

log = logging.getLogger(__name__)
CLAIMABLE = {JobState.QUEUED, JobState.PREPROCESSING}


def run_preprocess(session: Session, lease: jobs.Lease, job: Job, objects: ObjectStore,
                   settings: Any) -> bool:
    """Do the stage for a claimed job; True when the job was advanced to inference."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    options = PreprocessOptions.from_settings(settings, job.requested_series_uid)
    with tempfile.TemporaryDirectory(prefix=f"lungcad-{job.id}-") as tmp:
        t = time.perf_counter()
        folder = materialise_inputs(objects, list(job.inputs), Path(tmp) / "input", settings)
        timings["preprocess_download"] = time.perf_counter() - t
        jobs.heartbeat(session, lease, progress=10, stage="preprocess:read")
        result = preprocess_isolated(
            folder, options,
            memory_limit_bytes=getattr(settings, "preprocess_memory_limit_bytes", 6 * 2**30),
            timeout_s=getattr(settings, "preprocess_timeout_s", 600),
            on_wait=lambda: jobs.heartbeat(session, lease),
            wait_interval_s=min(10.0, lease.lease_s / 3))
    timings.update({f"preprocess_{k}": v for k, v in result.timings_s.items()})
    jobs.heartbeat(session, lease, progress=40, stage="preprocess:store")
    t = time.perf_counter()
    stored = store_preprocessed(objects, job.id, result.hu, result.lungs, result.meta)
    session.execute(delete(Artifact).where(Artifact.job_id == job.id,
                                           Artifact.name.in_(list(ARTIFACTS))))
    for a in stored:
        session.add(Artifact(job_id=job.id, name=a.name, object_key=a.key,
                             content_type=a.content_type, size=a.size, sha256=a.sha256,
                             public=False))
    timings["preprocess_store"] = time.perf_counter() - t
    timings["preprocess_total"] = time.perf_counter() - started
    source = result.meta["source"]
    details = {"preprocess": {
        "series_instance_uid": source.get("series_instance_uid"),
        "selection_reason": source.get("selection_reason"),
        "input_format": source.get("format"), "notes": source.get("notes", {}),
        "shape_zyx": list(result.geometry.shape),
        "lung_volumes_ml": result.meta["lung_volumes_ml"],
        "learned_lung_mask": result.meta.get("learned_lung_mask")}}
    return jobs.advance(session, lease, to_state=JobState.INFERRING, next_task=TASK_INFERENCE,
                        stage="inference:queued", timings={k: round(v, 3) for k, v in
                                                           timings.items()},
                        details=details, progress=50)


@app.task(name=TASK_PREPROCESS, bind=True, acks_late=True)
def preprocess(self: Any, job_id: str, attempt: int) -> None:
    """Preprocess job ``job_id`` at ``attempt`` (messages for an older attempt are dropped)."""
    settings = get_settings()
    with sessions()() as session:
        lease = claim_or_retry(self, session, job_id, attempt, CLAIMABLE,
                               JobState.PREPROCESSING, "preprocess:download", settings)
        if lease is None:
            return
        job = session.get(Job, job_id)
        assert job is not None
        try:
            with jobs.LeaseKeeper(sessions(), lease):
                if settings.deidentify_originals:
                    with tempfile.TemporaryDirectory(prefix=f"lungcad-deid-{job_id}-") as tmp:
                        deidentify_inputs(session, job, store(), Path(tmp), settings)
                if not run_preprocess(session, lease, job, store(), settings):
                    store().delete_prefix(f"jobs/{job_id}/preprocess/")
        except (ProcessingError, InvalidInput) as exc:
            session.rollback()
            log.info("preprocess failed", extra={"job_id": job_id, "code": exc.code})
            if exc.code != "canceled":
                jobs.fail(session, job_id, exc.code, exc.message, lease=lease)
        except (TransientError, StorageUnavailable, OperationalError) as exc:
            retry_transient(self, session, lease, exc)
