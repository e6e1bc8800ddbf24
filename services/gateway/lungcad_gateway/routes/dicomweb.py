"""DICOMweb STOW-RS (PS3.18 10.5): ``POST /v1/dicomweb/studies`` stores the DICOM instances of
one study and makes them a job, by the upload's own ingest (same inspection, codes, storage,
idempotency). The answer is the PS3.18 store response: the job's URL as the Retrieve URL
(0008,1190) and, per instance, its Referenced SOP Sequence (0008,1199) item."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response

from lungcad_gateway.deps import RuntimeDep, TenantDep
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
