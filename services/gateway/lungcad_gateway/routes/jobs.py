"""/v1/jobs: submit a study, poll it, list, cancel, fetch the result and artifacts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time
from types import SimpleNamespace
from typing import Annotated, Any

from anyio import CapacityLimiter, to_thread
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session, joinedload, selectinload

from lungcad.db.models import Artifact, DicomDelivery, Job, JobInput, JobState, is_id
from lungcad.db.types import utcnow
from lungcad.errors import Conflict, InvalidInput, LungcadError, NotFound, job_not_found
from lungcad.schemas import ArtifactsPublic, JobPublic, JobsPublic, Problem
from lungcad.storage import ObjectNotFound
from lungcad_gateway.auth import hash_key, is_key_shaped
from lungcad_gateway.deps import (
    QueryDate,
    RuntimeDep,
    SearchText,
    SessionDep,
    SettingsDep,
    StoreDep,
    TenantDep,
    api_key_from,
    authenticate,
)
from lungcad_gateway.dicomweb_index import forget_job
from lungcad_gateway.idempotency import check_key
from lungcad_gateway.ingest import PhaseTimer, accept_upload, server_timing
from lungcad_gateway.presenters import artifact_public, job_public
from lungcad_gateway.runtime import Runtime
from lungcad_gateway.status_reader import DELIVERY_FIELDS, INPUT_FIELDS, JOB_BY_KEY

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
PROBLEMS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "content": {"application/problem+json": {}}}
    for code in (400, 401, 404, 409, 413, 415, 422, 503)
}
# The operations on a job's stored data also answer 410 job_deleted.
DATA_PROBLEMS = {**PROBLEMS, 410: PROBLEMS[409]}
RESULT_ARTIFACT = "findings.json"
# Polls wait on the event loop, not as extra threads: more than a few threads only contend for
# the GIL. Measured at 300 polls/s on Postgres (past this VM's capacity): p99 0.25-0.5 s with
# this limit, 1.5-4 s with the 40 shared worker threads.
_POLL_THREADS = CapacityLimiter(4)

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["files"], "additionalProperties": False,
            "properties": {
                "files": {"type": "array", "minItems": 1,
                          "items": {"type": "string", "format": "binary"},
                          "description": "The study: DICOM files, one .zip of a DICOM folder, "
                                         "one NIfTI (.nii/.nii.gz), one .mha, one .mhd with its "
                                         ".raw, or one .nrrd."},
                "series_instance_uid": {"type": "string", "maxLength": 64,
                                        "description": "Analyse this series instead of the "
                                                       "automatically chosen one."},
                "patient_age": {"type": "integer", "minimum": 0, "maximum": 130},
                "patient_sex": {"type": "string", "enum": ["M", "F", "O"]},
                "callback_url": {"type": "string", "format": "uri",
                                 "description": "Receives a signed POST on each terminal "
                                                "state. Must resolve to a public address "
                                                "(422 callback_url_refused) unless the "
                                                "server allows its network."},
            }}}},
    }
}


def _load_job(session: Session, tenant_id: str, job_id: str) -> Job:
    job = session.execute(select(Job).options(joinedload(Job.inputs))
                          .where(Job.id == job_id, Job.tenant_id == tenant_id)
                          ).unique().scalars().first() if is_id(job_id) else None
    if job is None:
        raise job_not_found(job_id)
    return job


@router.post("", status_code=202, response_model=JobPublic, responses=DATA_PROBLEMS,
             openapi_extra=UPLOAD_BODY, summary="Submit a study for analysis")
async def create_job(request: Request, response: Response, runtime: RuntimeDep,
                     tenant: TenantDep,
                     idempotency_key: Annotated[str | None, Header()] = None) -> JobPublic:
    """Upload one chest CT study. Answers 202 with the job; poll its Location. The same
    ``Idempotency-Key`` with the same request answers the first job again (header
    ``Idempotent-Replayed: true``); with another request 422 ``idempotency_key_reused``; after
    that job was deleted 410 ``job_deleted``."""
    check_key(idempotency_key)
    timer = PhaseTimer()
    accepted = await accept_upload(request, runtime, tenant, idempotency_key, timer)
    job, created = accepted.job, accepted.created
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
        with runtime.sessions() as session:
            job = _load_job(session, tenant.id, job.id)
            body = job_public(job)
    else:
        body = job_public(job)
        response.headers["Server-Timing"] = server_timing(timer.phases)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return body


@router.get("", response_model=JobsPublic, responses=PROBLEMS, summary="List jobs")
def list_jobs(session: SessionDep, tenant: TenantDep, settings: SettingsDep,
              state: Annotated[list[JobState] | None, Query()] = None,
              created_from: Annotated[QueryDate, Query(description="On or after (UTC)")] = None,
              created_to: Annotated[QueryDate, Query(description="On or before (UTC)")] = None,
              q: SearchText = None,
              limit: Annotated[int | None, Query(ge=1)] = None,
              offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> JobsPublic:
    """Newest first; ``limit`` is capped at the server's maximum page size."""
    page = min(limit or settings.page_size_default, settings.page_size_max)
    filters = [Job.tenant_id == tenant.id]
    if state:
        filters.append(Job.state.in_([s.value for s in state]))
    if created_from:
        filters.append(Job.created_at >= datetime.combine(created_from, time.min, UTC))
    if created_to:
        filters.append(Job.created_at <= datetime.combine(created_to, time.max, UTC))
    if q:
        pattern = f"%{q.replace('%', '').replace('_', '')}%"
        filters.append(Job.patient_id.ilike(pattern) | Job.series_description.ilike(pattern))
    count = session.scalar(select(func.count()).select_from(Job).where(*filters)) or 0
    jobs = session.scalars(select(Job).options(selectinload(Job.inputs),
                                               selectinload(Job.deliveries)).where(*filters)
                           .order_by(Job.created_at.desc(), Job.id).limit(page)
                           .offset(offset)).all()
    return JobsPublic(data=[job_public(j) for j in jobs], count=count, limit=page, offset=offset)


@router.get("/{job_id}", response_model=JobPublic, responses=PROBLEMS, summary="Job status")
async def get_job(job_id: str, request: Request, runtime: RuntimeDep) -> Response:
    """The poll target, kept cheap. On Postgres the common case (a live key that owns the job)
    is one asyncpg query on the event loop; otherwise authentication, the job and its inputs
    take one worker-thread hop and two queries. Anything else takes the full path (401 / 404)."""
    key = api_key_from(request)
    key = key if key and is_key_shaped(key) else None  # any other key takes the full path
    reader = runtime.status_reader
    if reader is None or key is None or not is_id(job_id):
        body = await to_thread.run_sync(_job_status, request, runtime, job_id, key,
                                        limiter=_POLL_THREADS)
    else:
        await runtime.rate_limiter.check_async(key)
        row = await reader.job_row(hash_key(key), job_id)
        if row is not None:
            request.state.tenant_id = row["tenant_id"]
            body = _status_json(SimpleNamespace(**row))
        else:
            body = await to_thread.run_sync(_full_status, request, runtime, job_id, True,
                                            limiter=_POLL_THREADS)
    return Response(body, media_type="application/json")


_INPUTS, _DELIVERIES = JobInput.__table__, DicomDelivery.__table__
_INPUTS_OF = (select(*[_INPUTS.c[name] for name in INPUT_FIELDS])
              .where(_INPUTS.c.job_id == bindparam("job_id")).order_by(_INPUTS.c.ordinal))
_DELIVERIES_OF = (select(*[_DELIVERIES.c[name] for name in DELIVERY_FIELDS])
                  .where(_DELIVERIES.c.job_id == bindparam("job_id"))
                  .order_by(_DELIVERIES.c.id))


def _status_json(job: Any) -> bytes:
    return job_public(job).model_dump_json().encode()


def _job_status(request: Request, runtime: Runtime, job_id: str, key: str | None) -> bytes:
    """The poll in two Core queries (no ORM identity map): the job through a live key of its
    tenant, then its inputs. ``key``: the request's API key when key-shaped. A miss takes the
    full path."""
    if key is not None:
        runtime.rate_limiter.check(key)
    if key is not None and is_id(job_id):
        with runtime.sessions() as session:
            row = session.execute(JOB_BY_KEY, {"key_hash": hash_key(key),
                                               "job_id": job_id}).first()
            if row is not None:
                request.state.tenant_id = row.tenant_id
                inputs = session.execute(_INPUTS_OF, {"job_id": job_id}).all()
                deliveries = session.execute(_DELIVERIES_OF, {"job_id": job_id}).all()
                return _status_json(SimpleNamespace(**row._mapping, inputs=inputs,
                                                    deliveries=deliveries))
    return _full_status(request, runtime, job_id, key is not None)


def _full_status(request: Request, runtime: Runtime, job_id: str, rate_checked: bool) -> bytes:
    with runtime.sessions() as session:
        tenant = authenticate(request, session, runtime, rate_checked=rate_checked)
        return _status_json(_load_job(session, tenant.id, job_id))


@router.delete("/{job_id}", response_model=JobPublic, responses=PROBLEMS,
               summary="Cancel a job and delete its data")
def delete_job(job_id: str, session: SessionDep, tenant: TenantDep, store: StoreDep,
               runtime: RuntimeDep) -> JobPublic:
    """Cancels a job that is still running and deletes its stored inputs and results. The job
    record stays (state ``canceled`` or its final state, ``deleted: true``) as an audit trail."""
    job = session.scalars(select(Job).where(Job.id == job_id, Job.tenant_id == tenant.id)
                          .with_for_update()).first() if is_id(job_id) else None
    if job is None:
        raise job_not_found(job_id)
    from lungcad.jobs import enqueue_webhook

    if not JobState(job.state).is_terminal:
        job.state = JobState.CANCELED
        job.stage = "canceled"
        job.finished_at = utcnow()
        job.lease_token = None
        job.lease_expires_at = None
        job.error_code = "canceled"
        job.error_message = "Canceled by the client."
        enqueue_webhook(session, job)
    job.deleted_at = job.deleted_at or utcnow()
    for artifact in session.scalars(select(Artifact).where(Artifact.job_id == job.id)):
        session.delete(artifact)
    forget_job(session, job.id)
    session.commit()
    store.delete_prefix(f"jobs/{job.id}/")
    runtime.wake_relay.set()
    return job_public(_load_job(session, tenant.id, job_id))


def _require_result(job: Job) -> None:
    if job.deleted_at is not None:
        raise LungcadError("The job's data was deleted.", code="job_deleted", status=410)
    if job.state != JobState.SUCCEEDED:
        raise Conflict(f"The job is {job.state}; the result exists once it has succeeded.",
                       code="job_not_succeeded", state=job.state)


@router.get("/{job_id}/result", responses=DATA_PROBLEMS,
            summary="The findings document")
def get_result(job_id: str, session: SessionDep, tenant: TenantDep,
               store: StoreDep) -> JSONResponse:
    """The findings JSON once the job has succeeded; 409 (with the state) before."""
    job = _load_job(session, tenant.id, job_id)
    _require_result(job)
    artifact = session.scalars(select(Artifact).where(
        Artifact.job_id == job.id, Artifact.name == RESULT_ARTIFACT)).first()
    if artifact is None:
        raise NotFound("The job succeeded but has no findings document.",
                       code="result_missing")
    return JSONResponse(json.loads(store.get_bytes(artifact.object_key)))


@router.get("/{job_id}/artifacts", response_model=ArtifactsPublic, responses=DATA_PROBLEMS,
            summary="List result files")
def list_artifacts(job_id: str, session: SessionDep, tenant: TenantDep) -> ArtifactsPublic:
    job = _load_job(session, tenant.id, job_id)
    if job.deleted_at is not None:
        raise LungcadError("The job's data was deleted.", code="job_deleted", status=410)
    rows = session.scalars(select(Artifact).where(Artifact.job_id == job.id,
                                                  Artifact.public.is_(True))
                           .order_by(Artifact.name)).all()
    return ArtifactsPublic(data=[artifact_public(job.id, a) for a in rows])


@router.get("/{job_id}/artifacts/{name:path}", responses=DATA_PROBLEMS,
            response_class=StreamingResponse, summary="Download one result file")
def get_artifact(job_id: str, name: str, session: SessionDep, tenant: TenantDep,
                 store: StoreDep) -> StreamingResponse:
    job = _load_job(session, tenant.id, job_id)
    if job.deleted_at is not None:
        raise LungcadError("The job's data was deleted.", code="job_deleted", status=410)
    if len(name) > 200:
        raise InvalidInput("Artifact name too long.", code="invalid_name", status=400)
    artifact = session.scalars(select(Artifact).where(
        Artifact.job_id == job.id, Artifact.name == name, Artifact.public.is_(True))).first()
    if artifact is None:
        raise NotFound(f"The job has no artifact {name!r}.", code="artifact_not_found")
    try:
        chunks = store.iter_chunks(artifact.object_key)
        first = next(chunks, b"")
    except ObjectNotFound as exc:
        raise NotFound(f"The artifact {name!r} is missing from storage.",
                       code="artifact_missing") from exc

    def body():  # type: ignore[no-untyped-def]
        yield first
        yield from chunks

    filename = name.rsplit("/", 1)[-1]
    return StreamingResponse(body(), media_type=artifact.content_type, headers={
        "Content-Length": str(artifact.size), "ETag": f'"{artifact.sha256}"',
        "Content-Disposition": f'attachment; filename="{filename}"'})
