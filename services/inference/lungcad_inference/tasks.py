"""The ``lungcad.inference`` Celery task: a thin adapter around :mod:`runner`.

claim -> read the preprocessed arrays -> detect, measure, score -> store the result files ->
in ONE transaction: replace the job's findings rows and artifact rows, mark it succeeded and
queue its webhook. A retried or duplicated message therefore writes the results exactly once.
The model is loaded once per worker process, on first use.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import delete
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from lungcad import jobs
from lungcad.celery_app import TASK_INFERENCE
from lungcad.db.models import Artifact, FindingRow, Job, JobState
from lungcad.errors import InvalidInput, ProcessingError, TransientError
from lungcad.settings import get_settings
from lungcad.storage import ObjectNotFound, ObjectStore, StorageUnavailable
from lungcad.worker import app, claim_or_retry, retry_transient, sessions, store
from lungcad_inference.analysis import PatientInfo
from lungcad_inference.runner import InferenceOutput, models, run_inference

log = logging.getLogger(__name__)


def _patient(job: Job) -> PatientInfo:
    age = job.patient_age
    sex = job.patient_sex
    header = (job.details or {}).get("patient", {})
    return PatientInfo(age=age if age is not None else header.get("age"),
                       sex=sex or header.get("sex"),
                       study_instance_uid=job.study_instance_uid)


def _source_folder(objects: ObjectStore, job: Job, meta: dict[str, Any], tmp: Path,
                   settings: Any) -> Path | None:
    if not (meta.get("source") or {}).get("slices"):
        return None
    from lungcad_preprocess.inputs import materialise_inputs

    return materialise_inputs(objects, list(job.inputs), tmp / "input", settings)


def store_results(session: Session, objects: ObjectStore, job_id: str,
                   output: InferenceOutput) -> None:
    """Upload the files, then stage the rows (committed by ``jobs.succeed``)."""
    rows = []
    for name, (data, content_type) in sorted(output.files.items()):
        obj = objects.put_bytes(f"jobs/{job_id}/result/{name}", data, content_type)
        rows.append(Artifact(job_id=job_id, name=name, object_key=obj.key,
                             content_type=content_type, size=obj.size, sha256=obj.sha256,
                             public=True))
    session.execute(delete(Artifact).where(Artifact.job_id == job_id,
                                           Artifact.name.in_([r.name for r in rows])))
    session.execute(delete(FindingRow).where(FindingRow.job_id == job_id))
    session.add_all(rows)
    doc = output.result.document
    for f in doc.findings:
        session.add(FindingRow(
            job_id=job_id, finding_id=f.id, model_version=doc.model.version,
            center_mm=f.center_mm, center_voxel=f.center_voxel,
            sop_instance_uid=f.sop_instance_uid, diameter_mm=f.diameter_mm,
            short_axis_mm=f.short_axis_mm, volume_mm3=f.volume_mm3, mean_hu=f.mean_hu,
            nodule_type=f.type, location=f.location.model_dump(),
            margin=f.margin.model_dump(by_alias=True),
            nodule_probability=f.nodule_probability,
            malignancy_probability=f.malignancy_probability,
            brock_probability=f.brock_probability, lung_rads=f.lung_rads.category))


def run_stage(session: Session, lease: jobs.Lease, job: Job, objects: ObjectStore,
              settings: Any) -> bool:
    from lungcad_preprocess.store import load_preprocessed

    started = time.perf_counter()
    t = time.perf_counter()
    hu, lungs, meta = load_preprocessed(objects, job.id)
    load_s = time.perf_counter() - t
    jobs.heartbeat(session, lease, progress=60, stage="inference:detect")
    loaded = models(settings.inference_device, settings.inference_threads)
    with tempfile.TemporaryDirectory(prefix=f"lungcad-{job.id}-") as tmp:
        folder = _source_folder(objects, job, meta, Path(tmp), settings)
        output = run_inference(hu, lungs, meta, _patient(job), folder, loaded, job_id=job.id)
    jobs.heartbeat(session, lease, progress=90, stage="inference:store")
    store_results(session, objects, job.id, output)
    timings = {"inference_load": load_s, **output.timings_s,
               "inference_total": time.perf_counter() - started}
    doc = output.result.document
    details = {"result": {"findings": len(doc.findings), "lung_rads": doc.case.lung_rads.category,
                          "cancer_probability": doc.case.cancer_probability,
                          "class": doc.case.case_class, "model_version": doc.model.version}}
    return jobs.succeed(session, lease, timings={k: round(v, 3) for k, v in timings.items()},
                        details=details)


@app.task(name=TASK_INFERENCE, bind=True, acks_late=True)
def inference(self: Any, job_id: str, attempt: int) -> None:
    """Run inference for job ``job_id`` at ``attempt`` (stale or duplicate messages drop)."""
    settings = get_settings()
    with sessions()() as session:
        lease = claim_or_retry(self, session, job_id, attempt, {JobState.INFERRING},
                               JobState.INFERRING, "inference:load", settings)
        if lease is None:
            return
        job = session.get(Job, job_id)
        assert job is not None
        try:
            with jobs.LeaseKeeper(sessions(), lease):
                if not run_stage(session, lease, job, store(), settings):
                    log.info("inference result discarded: job canceled meanwhile",
                             extra={"job_id": job_id})
        except (ProcessingError, InvalidInput) as exc:
            session.rollback()
            jobs.fail(session, job_id, exc.code, exc.message, lease=lease)
        except SoftTimeLimitExceeded:
            session.rollback()
            jobs.fail(session, job_id, "inference_timeout",
                      f"Inference took longer than {settings.task_soft_time_limit_s} s.",
                      lease=lease)
        except ObjectNotFound as exc:
            session.rollback()
            jobs.fail(session, job_id, "preprocessed_data_missing",
                      f"The preprocessed volume is missing from storage ({exc}).", lease=lease)
        except (TransientError, StorageUnavailable, OperationalError) as exc:
            retry_transient(self, session, lease, exc)
        except Exception as exc:  # noqa: BLE001 - any other crash: fail with a specific code
            session.rollback()
            log.exception("inference crashed", extra={"job_id": job_id})
            jobs.fail(session, job_id, "inference_failed",
                      f"Inference failed: {type(exc).__name__}: {exc}"[:500], lease=lease)
