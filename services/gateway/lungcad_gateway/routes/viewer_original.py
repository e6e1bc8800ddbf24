"""The viewer's original-series reading mode: the analysed DICOM series with its native pixels.

``GET /v1/jobs/{job_id}/viewer/original``: rows, columns, pixel spacing, orientation and, per
image in InstanceNumber order, ImagePositionPatient, InstanceNumber and SOPInstanceUID.
``GET /v1/jobs/{job_id}/viewer/original/pixels``: the whole stack in one answer, int16 HU
``(n, rows, columns)`` as a raw DEFLATE ``.npy`` (the format of ``/viewer/volume``); with
``start`` / ``count`` / ``layout``, only some images, so the viewer can draw the first one while
the rest loads (:mod:`lungcad_gateway.original_pixels`).

Same authentication, tenant scoping and audit as the other viewer routes. The stack is decoded
on the first request and kept (see :mod:`lungcad_gateway.original_series`); a job without an
original DICOM series (a NIfTI, MetaImage or NRRD upload) answers 404
``original_series_not_found``.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lungcad.db.models import Artifact, Job
from lungcad.errors import LungcadError, NotFound
from lungcad.storage import ObjectStore
from lungcad_gateway import original_outlines, original_pixels
from lungcad_gateway import original_series as original
from lungcad_gateway.deps import SessionDep, StoreDep, TenantDep
from lungcad_gateway.routes.session import actor_for, audit
from lungcad_gateway.routes.viewer import (
    PROBLEMS,
    array_response,
    artifacts_of,
    load_findings,
    load_job,
    load_meta,
    load_seg,
    require_viewable,
)

log = logging.getLogger(__name__)
router = APIRouter(tags=["viewer"])
OBJECT_KEYS = {original.STACK_ARTIFACT: "original_series.npz",
               original.META_ARTIFACT: "original_series.json"}


def _not_available() -> NotFound:
    return NotFound("The job has no stored original DICOM series (a volume upload such as "
                    "NIfTI is shown as the 1 mm reconstruction only).",
                    code="original_series_not_found")


def _current(store: ObjectStore, artifacts: dict[str, Artifact], table: Any
             ) -> dict[str, Any] | None:
    """The stored series document, if it was built for the slices preprocessing holds now."""
    if original.META_ARTIFACT not in artifacts or original.STACK_ARTIFACT not in artifacts:
        return None
    document: dict[str, Any] = json.loads(
        store.get_bytes(artifacts[original.META_ARTIFACT].object_key))
    stored = sorted(i["sop_instance_uid"] for i in document["images"])
    return document if stored == sorted(table.sop_instance_uids) else None


def _build(session: Session, store: ObjectStore, job: Job, meta: dict[str, Any],
           table: Any) -> dict[str, Any]:
    """Decode the series once and keep the stack and its document as internal artifacts."""
    started = time.perf_counter()
    datasets = original.read_series(store, job.inputs, set(table.sop_instance_uids))
    hu, order = original.build_stack(datasets, table)
    document = original.series_document(table, order, hu.shape, job.id,
                                        meta["source"].get("series_instance_uid"))
    bodies = {original.STACK_ARTIFACT: (original.encode_stack(hu), "application/x-npz"),
              original.META_ARTIFACT: (original.document_bytes(document), "application/json")}
    session.execute(delete(Artifact).where(Artifact.job_id == job.id,
                                           Artifact.name.in_(list(bodies))))
    for name, (data, content_type) in bodies.items():
        stored = store.put_bytes(f"jobs/{job.id}/viewer/{OBJECT_KEYS[name]}", data, content_type)
        session.add(Artifact(job_id=job.id, name=name, object_key=stored.key,
                             content_type=content_type, size=stored.size, sha256=stored.sha256,
                             public=False))
    try:
        session.commit()
    except IntegrityError:  # a concurrent first open stored the same stack
        session.rollback()
    log.info("original series decoded", extra={"job_id": job.id, "images": len(order),
                                                "seconds": round(time.perf_counter() - started,
                                                                 2)})
    return document.model_dump(mode="json")


def ensure_series(session: Session, store: ObjectStore, tenant_id: str, job_id: str
                  ) -> tuple[Job, dict[str, Any]]:
    """The job and its original series document, decoding and storing the stack if needed."""
    job = load_job(session, tenant_id, job_id)
    artifacts = artifacts_of(session, job.id)
    require_viewable(job, artifacts)
    meta = load_meta(store, artifacts)
    table = original.slice_table(meta)
    if table is None or not any(i.kind in original.DICOM_INPUTS for i in job.inputs):
        raise _not_available()
    document = _current(store, artifacts, table)
    return job, document if document is not None else _build(session, store, job, meta, table)


@router.get("/v1/jobs/{job_id}/viewer/original", response_model=original.OriginalSeries,
            responses=PROBLEMS,
            summary="The original series: size, geometry and image numbers, in PACS order")
def viewer_original(job_id: str, session: SessionDep, tenant: TenantDep,
                    store: StoreDep) -> original.OriginalSeries:
    _, document = ensure_series(session, store, tenant.id, job_id)
    return original.OriginalSeries.model_validate(document)


@router.get("/v1/jobs/{job_id}/viewer/original/pixels", responses={
    **PROBLEMS, 200: {"content": {"application/octet-stream": {}},
                      "description": "Raw DEFLATE of a .npy: int16 HU (n, rows, columns), "
                                     "images in InstanceNumber order (with start / count: "
                                     "(count, rows, columns), images start .. start + count "
                                     "- 1)"}},
    response_class=Response, summary="The original series' pixels, compressed: all of them in "
                                     "one answer, or some images")
def viewer_original_pixels(
        job_id: str, request: Request, session: SessionDep, tenant: TenantDep,
        store: StoreDep,
        start: Annotated[int | None, Query(ge=0, description="First image (0-based stack "
                                                             "index, InstanceNumber order)")]
        = None,
        count: Annotated[int | None, Query(ge=1, description="Images from start (cut at the "
                                                             "last one); default: to the end")]
        = None,
        layout: Annotated[original_pixels.Layout | None, Query(
            description="c: each image's int16 little-endian in C order (default); planes: "
                        "each image's low bytes, then its high bytes (smaller)")] = None,
        ) -> Response:
    """Without parameters, the whole stack as it is stored. With any of ``start``, ``count``,
    ``layout``: images ``start .. start + count - 1`` (header ``X-LungCAD-Images``: first index
    and number sent, ``X-LungCAD-Layout``); 416 ``images_out_of_range`` when ``start`` is past
    the last image."""
    job, document = ensure_series(session, store, tenant.id, job_id)
    artifacts = artifacts_of(session, job.id)
    stored = artifacts[original.STACK_ARTIFACT]
    audit(session, request, tenant.id, actor_for(request), "read",
          f"jobs/{job.id}/viewer/original", 200)
    session.commit()
    if start is None and count is None and layout is None:
        return array_response(store.get_bytes(stored.object_key), original.ARRAY)
    total = len(document["images"])
    first = start or 0
    if first >= total:
        raise LungcadError(f"The series has {total} images (0 to {total - 1}); image {first} "
                           "was asked for.", code="images_out_of_range", status=416)
    sent = min(count or total, total - first)
    pixels = original_pixels.CACHE.get(
        (stored.object_key, stored.sha256),
        lambda: original_pixels.decode_stack(store.get_bytes(stored.object_key),
                                             original.ARRAY))
    body, inflated = pixels.images(first, sent, layout or "c")
    return Response(body, media_type="application/octet-stream", headers={
        "X-LungCAD-Format": "npy", "X-LungCAD-Encoding": "deflate-raw",
        "X-LungCAD-Inflated-Length": str(inflated), "X-LungCAD-Images": f"{first} {sent}",
        "X-LungCAD-Layout": layout or "c", "Cache-Control": "private, no-store"})


@router.get("/v1/jobs/{job_id}/viewer/original/outlines",
            response_model=original_outlines.OriginalOutlines, responses=PROBLEMS,
            summary="The findings' outlines (DICOM SEG) on the original series' native images")
def viewer_original_outlines(job_id: str, request: Request, session: SessionDep,
                             tenant: TenantDep, store: StoreDep
                             ) -> original_outlines.OriginalOutlines:
    """Per finding, the images its segmentation crosses and its run-length mask on each, in
    native pixels; a finding without a segment (or a job without a SEG) has no images, and the
    viewer draws its circle instead. 409 ``outlines_undecodable`` when the stored SEG cannot be
    read, ``outlines_not_on_series`` when its frames do not lie on the series' images."""
    job, document = ensure_series(session, store, tenant.id, job_id)
    artifacts = artifacts_of(session, job.id)
    findings = load_findings(store, artifacts)
    seg = load_seg(store, artifacts) if findings is not None else None
    answer = original_outlines.outlines(document, seg,
                                        [f.id for f in findings.findings] if findings else [])
    audit(session, request, tenant.id, actor_for(request), "read",
          f"jobs/{job.id}/viewer/original/outlines", 200)
    session.commit()
    return answer
