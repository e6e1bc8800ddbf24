"""DICOMweb (PS3.18) under ``/v1/dicomweb``, per tenant, with the API's authentication.

STOW-RS (10.5): ``POST /studies`` stores the DICOM instances of one study and makes them a job,
by the upload's own ingest (same inspection, codes, storage, idempotency). The answer is the
PS3.18 store response: the job's URL as the Retrieve URL (0008,1190) and, per instance, its
Referenced SOP Sequence (0008,1199) item.

QIDO-RS (10.6) and WADO-RS (10.4) read what the tenant's live jobs hold: each job's original
DICOM series (its stored inputs) and its DICOM SR and SEG, through the index of
:mod:`lungcad_gateway.dicomweb_index`. An unknown UID, or another tenant's, is 404
``study_not_found`` / ``series_not_found`` / ``instance_not_found``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from lungcad.errors import NotFound
from lungcad.storage import ObjectStore
from lungcad_gateway import dicomweb_answers as answers
from lungcad_gateway.deps import RuntimeDep, SessionDep, StoreDep, TenantDep
from lungcad_gateway.dicom.spool import is_uid
from lungcad_gateway.dicomweb_index import Entry, find, read_instances, sync_tenant
from lungcad_gateway.idempotency import check_key
from lungcad_gateway.ingest import PhaseTimer, accept_upload, server_timing
from lungcad_gateway.routes.jobs import PROBLEMS

router = APIRouter(prefix="/v1/dicomweb", tags=["dicomweb"])
PART_TYPE = b"application/dicom"
DICOM_JSON = "application/dicom+json"
RETRIEVE_URL, REFERENCED_SOP_SEQUENCE = "00081190", "00081199"
REFERENCED_SOP_CLASS, REFERENCED_SOP_INSTANCE = "00081150", "00081155"

STOW_BODY = {
    "requestBody": {
        "required": True,
        "content": {'multipart/related; type="application/dicom"': {"schema": {
            "type": "string", "format": "binary",
            "description": "One part per DICOM instance (Content-Type: application/dicom), "
                           "all of one CT study."}}},
    }
}


def _element(vr: str, value: str) -> dict[str, Any]:
    return {"vr": vr, "Value": [value]}


def store_response(job_url: str, instances: list[tuple[str, str | None]]) -> dict[str, Any]:
    body: dict[str, Any] = {RETRIEVE_URL: _element("UR", job_url)}
    if instances:
        body[REFERENCED_SOP_SEQUENCE] = {"vr": "SQ", "Value": [
            {REFERENCED_SOP_CLASS: _element("UI", sop_class),
             REFERENCED_SOP_INSTANCE: _element("UI", sop_instance or "")}
            for sop_class, sop_instance in instances]}
    return body


@router.post("/studies", responses={**PROBLEMS, 200: {"content": {DICOM_JSON: {}},
                                                       "description": "PS3.18 store response"}},
             openapi_extra=STOW_BODY, summary="Store a study (STOW-RS) and analyse it")
async def stow_studies(request: Request, runtime: RuntimeDep, tenant: TenantDep,
                       idempotency_key: Annotated[str | None, Header()] = None) -> Response:
    """Store the instances of one chest CT study; answers 200 with the store response, whose
    Retrieve URL (and the Location header) is the job to poll."""
    check_key(idempotency_key)
    headers: dict[str, str] = {}
    instances: list[tuple[str, str | None]] = []
    timer = PhaseTimer()
    accepted = await accept_upload(request, runtime, tenant, idempotency_key, timer,
                                   part_type=PART_TYPE)
    job = accepted.job
    if accepted.created and accepted.summary is not None:
        instances = accepted.summary.instances
        headers["Server-Timing"] = server_timing(timer.phases)
    else:
        headers["Idempotent-Replayed"] = "true"
    location = f"/v1/jobs/{job.id}"
    headers["Location"] = location
    url = str(request.base_url).rstrip("/") + location
    return Response(json.dumps(store_response(url, instances)), status_code=200,
                    media_type=DICOM_JSON, headers=headers)


# -- QIDO-RS and WADO-RS ----------------------------------------------------------------------
Limit = Annotated[int | None, Query(ge=1, le=100_000, description="At most this many results")]
FrameList = Annotated[str, Path(pattern=r"^[1-9][0-9]{0,8}(,[1-9][0-9]{0,8})*$",
                                max_length=2000, description="e.g. 1 or 1,2,3")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="Skip this many results")]
QIDO_ANSWER = {**PROBLEMS, 200: {"content": {DICOM_JSON: {}},
                                 "description": "QIDO-RS results (DICOM JSON)"}}
METADATA_ANSWER = {**PROBLEMS, 200: {"content": {DICOM_JSON: {}},
                                     "description": "WADO-RS metadata (DICOM JSON)"}}
INSTANCES_ANSWER = {**PROBLEMS, 200: {"content": {'multipart/related; type="application/dicom"':
                                                  {}}, "description": "DICOM instances"}}
OCTETS_ANSWER = {**PROBLEMS, 200: {"content": {'multipart/related; type="application/'
                                               'octet-stream"': {}},
                                   "description": "Uncompressed frames or bulk data"}}
QIDO_KEYS = ("Matching keys: any attribute keyword or tag (e.g. PatientID=P1, "
             "StudyDate=20240101-20241231, PatientName=SMITH*); includefield is ignored.")


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + router.prefix


def _is_uid(uid: str | None) -> bool:
    """None, or the shape of a UID (a path parameter that is not matches no row and is not
    queried: a NUL in it was a 500 on Postgres)."""
    return uid is None or is_uid(uid)


def _located(session: Session, store: ObjectStore, tenant_id: str, study: str,
             series: str | None = None, sop: str | None = None) -> list[Entry]:
    """The tenant's instances under these UIDs; 404 with the level that is unknown. A study
    or series is looked up in an index brought up to date first (one indexed before its SR
    and SEG existed then has them); one instance is first looked up as the index stands, so
    that a viewer's many frame requests cost no walk over the tenant's stored objects."""
    if not _is_uid(study):
        raise NotFound(f"No study {study[:64]!r} for this API key.", code="study_not_found")
    for brought_up_to_date in ((True,) if sop is None else (False, True)):
        if brought_up_to_date:
            sync_tenant(session, store, tenant_id)
        if _is_uid(series) and _is_uid(sop):
            entries = find(session, tenant_id, study, series, sop)
            if entries:
                return entries
    if sop is not None and _is_uid(series) and find(session, tenant_id, study, series):
        raise NotFound(f"No instance {sop[:64]!r} in series {series} for this API key.",
                       code="instance_not_found")
    if series is not None and find(session, tenant_id, study):
        raise NotFound(f"No series {series[:64]!r} in study {study} for this API key.",
                       code="series_not_found")
    raise NotFound(f"No study {study} for this API key.", code="study_not_found")


def _qido(request: Request, session: Session, store: ObjectStore, tenant_id: str,
          build: Any, limit: int | None, offset: int, **uids: str) -> Response:
    if uids:
        entries = _located(session, store, tenant_id, **uids)
    else:
        sync_tenant(session, store, tenant_id)
        entries = find(session, tenant_id)
    results = answers.filter_results(build(entries, _base_url(request)),
                                     request.query_params.multi_items(), limit, offset)
    return Response(json.dumps(results), media_type=DICOM_JSON)


@router.get("/studies", responses=QIDO_ANSWER, response_class=Response,
            summary="Search for studies (QIDO-RS)", description=QIDO_KEYS)
def search_studies(request: Request, session: SessionDep, store: StoreDep, tenant: TenantDep,
                   limit: Limit = None, offset: Offset = 0) -> Response:
    return _qido(request, session, store, tenant.id, answers.study_results, limit, offset)


@router.get("/studies/{study}/series", responses=QIDO_ANSWER, response_class=Response,
            summary="Search for the series of a study (QIDO-RS)", description=QIDO_KEYS)
def search_series(study: str, request: Request, session: SessionDep, store: StoreDep,
                  tenant: TenantDep, limit: Limit = None, offset: Offset = 0) -> Response:
    return _qido(request, session, store, tenant.id, answers.series_results, limit, offset,
                 study=study)


@router.get("/studies/{study}/instances", responses=QIDO_ANSWER, response_class=Response,
            summary="Search for the instances of a study (QIDO-RS)", description=QIDO_KEYS)
def search_study_instances(study: str, request: Request, session: SessionDep, store: StoreDep,
                           tenant: TenantDep, limit: Limit = None,
                           offset: Offset = 0) -> Response:
    return _qido(request, session, store, tenant.id, answers.instance_results, limit, offset,
                 study=study)


@router.get("/studies/{study}/series/{series}/instances", responses=QIDO_ANSWER,
            response_class=Response, summary="Search for the instances of a series (QIDO-RS)",
            description=QIDO_KEYS)
def search_series_instances(study: str, series: str, request: Request, session: SessionDep,
                            store: StoreDep, tenant: TenantDep, limit: Limit = None,
                            offset: Offset = 0) -> Response:
    return _qido(request, session, store, tenant.id, answers.instance_results, limit, offset,
                 study=study, series=series)


def _instances(store: ObjectStore, entries: list[Entry]) -> Iterator[bytes]:
    for _, data in read_instances(store, entries):
        yield data


def _retrieve(session: Session, store: ObjectStore, tenant_id: str, **uids: str | None
              ) -> StreamingResponse:
    entries = _located(session, store, tenant_id, **uids)  # type: ignore[arg-type]
    body, media = answers.multipart(_instances(store, entries), "application/dicom")
    return StreamingResponse(body, media_type=media)


@router.get("/studies/{study}", responses=INSTANCES_ANSWER, response_class=StreamingResponse,
            summary="Retrieve a study's instances (WADO-RS)")
def retrieve_study(study: str, session: SessionDep, store: StoreDep,
                   tenant: TenantDep) -> StreamingResponse:
    return _retrieve(session, store, tenant.id, study=study)


@router.get("/studies/{study}/series/{series}", responses=INSTANCES_ANSWER,
            response_class=StreamingResponse, summary="Retrieve a series' instances (WADO-RS)")
def retrieve_series(study: str, series: str, session: SessionDep, store: StoreDep,
                    tenant: TenantDep) -> StreamingResponse:
    return _retrieve(session, store, tenant.id, study=study, series=series)


@router.get("/studies/{study}/series/{series}/instances/{instance}",
            responses=INSTANCES_ANSWER, response_class=StreamingResponse,
            summary="Retrieve one instance (WADO-RS)")
def retrieve_instance(study: str, series: str, instance: str, session: SessionDep,
                      store: StoreDep, tenant: TenantDep) -> StreamingResponse:
    return _retrieve(session, store, tenant.id, study=study, series=series, sop=instance)


def _metadata(request: Request, session: Session, store: ObjectStore, tenant_id: str,
              **uids: str | None) -> Response:
    entries = _located(session, store, tenant_id, **uids)  # type: ignore[arg-type]
    base = _base_url(request)
    body = []
    for entry, data in read_instances(store, entries):
        url = answers.instance_url(base, entry)
        body.append(answers.metadata(answers.read_dataset(data),
                                     lambda tag, url=url: f"{url}/bulkdata/{tag}"))
    return Response(json.dumps(body), media_type=DICOM_JSON)


@router.get("/studies/{study}/metadata", responses=METADATA_ANSWER, response_class=Response,
            summary="A study's metadata (WADO-RS)")
def study_metadata(study: str, request: Request, session: SessionDep, store: StoreDep,
                   tenant: TenantDep) -> Response:
    return _metadata(request, session, store, tenant.id, study=study)


@router.get("/studies/{study}/series/{series}/metadata", responses=METADATA_ANSWER,
            response_class=Response, summary="A series' metadata (WADO-RS)")
def series_metadata(study: str, series: str, request: Request, session: SessionDep,
                    store: StoreDep, tenant: TenantDep) -> Response:
    return _metadata(request, session, store, tenant.id, study=study, series=series)


@router.get("/studies/{study}/series/{series}/instances/{instance}/metadata",
            responses=METADATA_ANSWER, response_class=Response,
            summary="An instance's metadata (WADO-RS)")
def instance_metadata(study: str, series: str, instance: str, request: Request,
                      session: SessionDep, store: StoreDep, tenant: TenantDep) -> Response:
    return _metadata(request, session, store, tenant.id, study=study, series=series,
                     sop=instance)


def _one_dataset(session: Session, store: ObjectStore, tenant_id: str, study: str, series: str,
                 instance: str) -> Any:
    entries = _located(session, store, tenant_id, study, series, instance)
    found = next(read_instances(store, entries[:1]), None)
    if found is None:  # its job deleted since the index was read
        raise NotFound(f"No instance {instance[:64]} for this API key.",
                       code="instance_not_found")
    return answers.read_dataset(found[1])


def _octets(parts: list[bytes]) -> StreamingResponse:
    body, media = answers.multipart(
        parts, f"{answers.OCTETS}; transfer-syntax={answers.EXPLICIT_LE}")
    return StreamingResponse(body, media_type=media)


@router.get("/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
            responses={**OCTETS_ANSWER, 406: PROBLEMS[409]}, response_class=StreamingResponse,
            summary="Frames of an instance, uncompressed (WADO-RS)")
def retrieve_frames(study: str, series: str, instance: str, frames: FrameList,
                    session: SessionDep, store: StoreDep, tenant: TenantDep
                    ) -> StreamingResponse:
    """``frames``: 1-based frame numbers, comma-separated. Each part is the frame's native
    pixel data (explicit VR little endian; a binary SEG frame bit-packed)."""
    numbers = [int(number) for number in frames.split(",")]
    ds = _one_dataset(session, store, tenant.id, study, series, instance)
    return _octets(answers.frame_bytes(ds, numbers))


@router.get("/studies/{study}/series/{series}/instances/{instance}/bulkdata/{tag}",
            responses=OCTETS_ANSWER, response_class=StreamingResponse,
            summary="A bulk data element of an instance (WADO-RS)")
def retrieve_bulkdata(study: str, series: str, instance: str, tag: str, session: SessionDep,
                      store: StoreDep, tenant: TenantDep) -> StreamingResponse:
    """``tag``: the element's tag as 8 hex digits (the BulkDataURI of the metadata)."""
    ds = _one_dataset(session, store, tenant.id, study, series, instance)
    return _octets([answers.bulk_value(ds, tag)])
