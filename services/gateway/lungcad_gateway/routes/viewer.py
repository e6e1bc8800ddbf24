"""The dashboard's read API: the worklist, a case for the viewer, and its volume and lung mask.

The viewer grid is the preprocessed volume: int16 HU ``(z, y, x)`` on a 1 mm LPS grid cropped
to the lungs (``volume.npz`` / ``lung_mask.npz`` / ``preprocess.json``, internal artifacts of the
preprocessing stage). ``/viewer/volume`` and ``/viewer/mask`` answer a raw DEFLATE stream
(RFC 1951) of a NumPy ``.npy`` file: the compressed member of the stored ``.npz`` passed through
as is, so opening a case costs the server no decoding. Browsers inflate it with
``new DecompressionStream("deflate-raw")``; Python with ``zlib.decompress(data, -15)``.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import case, func, nulls_last, select
from sqlalchemy.orm import Session, selectinload

from lungcad.db.models import Artifact, FindingRow, Job, JobState, is_id
from lungcad.errors import Conflict, LungcadError, NotFound, job_not_found
from lungcad.findings import NOTICE, FindingsDocument
from lungcad.imaging.geometry import Geometry
from lungcad.schemas import JobPublic, Problem
from lungcad_gateway import grid_outlines
from lungcad_gateway.deps import SearchText, SessionDep, SettingsDep, StoreDep, TenantDep
from lungcad_gateway.original_series import OriginalInfo, original_info, slice_table
from lungcad_gateway.presenters import job_public
from lungcad_gateway.routes.jobs import RESULT_ARTIFACT
from lungcad_gateway.routes.session import actor_for, audit
from lungcad_gateway.seg_frames import SEG_ARTIFACT, read_seg

router = APIRouter(tags=["viewer"])
PROBLEMS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "content": {"application/problem+json": {}}}
    for code in (401, 403, 404, 409, 410, 422)}
ARRAYS = {"volume": "hu", "lung_mask": "labels"}
META = "preprocess.json"
DOWNLOADS = ("findings.json", "sr.dcm", "seg.dcm")
SORTS = {"created_at": Job.created_at, "study_date": Job.study_date,
         "patient_id": Job.patient_id, "state": Job.state}


# -- schemas ----------------------------------------------------------------------------------
class WorklistItem(BaseModel):
    job: JobPublic
    nodules: int | None = Field(None, description="Findings of a succeeded job")
    lung_rads: str | None = Field(
        None, description="Highest Lung-RADS v2022 category of the findings; 1 for a succeeded "
                          "study without nodules")
    brock_risk: float | None = Field(
        None, description="Highest Brock (PanCan) probability of malignancy of the findings "
                          "(0-1): the risk figure")
    malignancy_score: float | None = Field(
        None, description="Highest CNN malignancy score (0-1): a research score, not a "
                          "calibrated risk (docs/model_card.md)")
    risk: float | None = Field(None, deprecated=True,
                               description="Deprecated: the same as malignancy_score")


class WorklistPublic(BaseModel):
    data: list[WorklistItem]
    count: int
    limit: int
    offset: int


class ArrayInfo(BaseModel):
    url: str
    format: Literal["npy"] = "npy"
    encoding: Literal["deflate-raw"] = "deflate-raw"
    dtype: str
    bytes: int = Field(description="Size of the compressed stream")


class ViewerFinding(BaseModel):
    finding: dict[str, Any] = Field(description="The finding as in the findings document")
    index_zyx: list[float] = Field(description="Its centre in the viewer grid (voxels)")
    radius_vox: list[float] = Field(description="Half its diameter in voxels, (z, y, x)")
    key_images: list[str] = Field(default_factory=list)


class Download(BaseModel):
    name: str
    url: str
    content_type: str
    size: int


class ViewerCase(BaseModel):
    notice: str = NOTICE
    job: JobPublic
    geometry: dict[str, Any] = Field(description="shape_zyx, spacing_zyx_mm, origin_lps_mm, "
                                                 "direction_itk of the viewer grid")
    volume: ArrayInfo
    mask: ArrayInfo | None
    outlines_url: str | None = Field(
        None, description="The findings' masks (from the DICOM SEG) on this grid; null when the "
                          "job has no SEG")
    labels: dict[str, str] = Field(default_factory=dict)
    lung_volumes_ml: dict[str, Any] = Field(default_factory=dict)
    findings: list[ViewerFinding]
    findings_source: str | None = Field(None, description="The artifact the findings came from")
    case: dict[str, Any] | None = None
    model: dict[str, Any] | None = None
    downloads: list[Download]
    original: OriginalInfo | None = Field(
        None, description="The original DICOM series (native pixels, PACS image numbers); "
                          "null for a volume upload (NIfTI, MetaImage, NRRD)")


# -- helpers shared with the feedback routes --------------------------------------------------
def load_job(session: Session, tenant_id: str, job_id: str) -> Job:
    job = session.scalars(select(Job).options(selectinload(Job.inputs))
                          .where(Job.id == job_id, Job.tenant_id == tenant_id)
                          ).first() if is_id(job_id) else None
    if job is None:
        raise job_not_found(job_id)
    if job.deleted_at is not None:
        raise LungcadError("The job's data was deleted.", code="job_deleted", status=410)
    return job


def artifacts_of(session: Session, job_id: str) -> dict[str, Artifact]:
    return {a.name: a for a in session.scalars(select(Artifact).where(Artifact.job_id == job_id))}


def require_viewable(job: Job, artifacts: dict[str, Artifact]) -> None:
    if "volume" not in artifacts or META not in artifacts:
        raise Conflict(f"The job is {job.state}; the images can be viewed once preprocessing "
                       "has finished.", code="viewer_not_ready", state=job.state)


def load_meta(store: Any, artifacts: dict[str, Artifact]) -> dict[str, Any]:
    return json.loads(store.get_bytes(artifacts[META].object_key))  # type: ignore[no-any-return]


def load_findings(store: Any, artifacts: dict[str, Artifact]) -> FindingsDocument | None:
    artifact = artifacts.get(RESULT_ARTIFACT)
    if artifact is None:
        return None
    return FindingsDocument.model_validate_json(store.get_bytes(artifact.object_key))


def load_seg(store: Any, artifacts: dict[str, Artifact]) -> Any | None:
    """The job's DICOM SEG as a pydicom dataset, or None when it has none; 409
    ``outlines_undecodable`` when the stored file is not a SEG."""
    artifact = artifacts.get(SEG_ARTIFACT)
    return read_seg(store.get_bytes(artifact.object_key)) if artifact is not None else None


def npz_member_deflate(data: bytes, array: str) -> tuple[bytes, int]:
    """The raw DEFLATE bytes of ``<array>.npy`` inside an ``.npz`` and its inflated size.

    A stored (uncompressed) member is deflated here instead, so the answer has one format.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.getinfo(f"{array}.npy")
        if info.compress_type != zipfile.ZIP_DEFLATED:
            packer = zlib.compressobj(1, zlib.DEFLATED, -15)
            return packer.compress(zf.read(info)) + packer.flush(), info.file_size
    offset = info.header_offset
    if data[offset:offset + 4] != b"PK\x03\x04":
        raise LungcadError("The stored array is not a valid archive.", code="artifact_corrupt",
                           status=500)
    name_len, extra_len = struct.unpack_from("<HH", data, offset + 26)
    start = offset + 30 + name_len + extra_len
    return data[start:start + info.compress_size], info.file_size


# -- routes -----------------------------------------------------------------------------------
@router.get("/v1/worklist", response_model=WorklistPublic, responses=PROBLEMS,
            summary="Jobs with their findings summary, for the dashboard's worklist")
def worklist(session: SessionDep, tenant: TenantDep, settings: SettingsDep,
             state: Annotated[list[JobState] | None, Query()] = None,
             q: SearchText = None,
             lung_rads: Annotated[list[Literal["0", "1", "2", "3", "4A", "4B", "4X"]] | None,
                                  Query(description="Highest category is one of these")] = None,
             sort: Literal["created_at", "study_date", "patient_id", "state", "lung_rads",
                           "brock_risk", "malignancy_score", "risk", "nodules"] = "created_at",
             order: Literal["asc", "desc"] = "desc",
             limit: Annotated[int | None, Query(ge=1)] = None,
             offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> WorklistPublic:
    """Filters as ``GET /v1/jobs`` (state, q) plus Lung-RADS; sort by any column."""
    page = min(limit or settings.page_size_default, settings.page_size_max)
    summary = (select(FindingRow.job_id.label("job_id"),
                      func.count(FindingRow.id).label("nodules"),
                      func.max(FindingRow.lung_rads).label("lung_rads"),
                      func.max(FindingRow.brock_probability).label("brock_risk"),
                      func.max(FindingRow.malignancy_probability).label("score"))
               .group_by(FindingRow.job_id).subquery())
    # a study analysed without nodules is Lung-RADS 1 (negative), not "no category"
    category = case((Job.state == JobState.SUCCEEDED.value,
                     func.coalesce(summary.c.lung_rads, "1")), else_=summary.c.lung_rads)
    filters: list[Any] = [Job.tenant_id == tenant.id]
    if state:
        filters.append(Job.state.in_([s.value for s in state]))
    if q:
        pattern = f"%{q.replace('%', '').replace('_', '')}%"
        filters.append(Job.patient_id.ilike(pattern) | Job.series_description.ilike(pattern))
    if lung_rads:
        filters.append(category.in_(lung_rads))
    columns = {**SORTS, "lung_rads": category, "brock_risk": summary.c.brock_risk,
               "malignancy_score": summary.c.score, "risk": summary.c.score,
               "nodules": summary.c.nodules}
    column = columns[sort]
    base = select(Job, summary.c.nodules, category, summary.c.brock_risk, summary.c.score
                  ).outerjoin(summary, summary.c.job_id == Job.id).where(*filters)
    count = session.scalar(select(func.count()).select_from(base.subquery())) or 0
    ordered = nulls_last(column.asc() if order == "asc" else column.desc())
    rows = session.execute(base.options(selectinload(Job.inputs), selectinload(Job.deliveries))
                           .order_by(ordered, Job.created_at.desc(), Job.id)
                           .limit(page).offset(offset)).all()
    items = []
    for job, nodules, top_rads, brock, score in rows:
        done = job.state == JobState.SUCCEEDED
        items.append(WorklistItem(job=job_public(job), nodules=(nodules or 0) if done else None,
                                  lung_rads=top_rads, brock_risk=brock,
                                  malignancy_score=score, risk=score))
    return WorklistPublic(data=items, count=count, limit=page, offset=offset)


def _key_images(job_id: str, finding_id: str, artifacts: dict[str, Artifact]) -> list[str]:
    names = sorted(n for n, a in artifacts.items() if a.public
                   and a.content_type == "image/png"
                   and finding_id in n.rsplit("/", 1)[-1].replace(".png", "").split("_"))
    return [f"/v1/jobs/{job_id}/artifacts/{n}" for n in names]


@router.get("/v1/jobs/{job_id}/viewer", response_model=ViewerCase, responses=PROBLEMS,
            summary="A case for the viewer: grid geometry, findings in the grid, downloads")
def viewer_case(job_id: str, session: SessionDep, tenant: TenantDep,
                store: StoreDep) -> ViewerCase:
    job = load_job(session, tenant.id, job_id)
    artifacts = artifacts_of(session, job.id)
    require_viewable(job, artifacts)
    meta = load_meta(store, artifacts)
    grid = Geometry.from_dict(meta["geometry"])
    document = load_findings(store, artifacts)
    findings = []
    for f in document.findings if document else []:
        index = grid.world_to_index(f.center_mm)
        radius = [f.diameter_mm / 2 / s for s in grid.spacing]
        findings.append(ViewerFinding(
            finding=f.model_dump(mode="json", by_alias=True),
            index_zyx=[round(float(v), 2) for v in index], radius_vox=radius,
            key_images=_key_images(job.id, f.id, artifacts)))

    def info(name: str) -> ArrayInfo:
        return ArrayInfo(url=f"/v1/jobs/{job.id}/viewer/{'mask' if name == 'lung_mask' else name}",
                         dtype="int16" if name == "volume" else "uint8",
                         bytes=artifacts[name].size)

    downloads = [Download(name=n, url=f"/v1/jobs/{job.id}/artifacts/{n}",
                          content_type=artifacts[n].content_type, size=artifacts[n].size)
                 for n in DOWNLOADS if n in artifacts and artifacts[n].public]
    return ViewerCase(
        job=job_public(job), geometry=grid.to_dict(), volume=info("volume"),
        mask=info("lung_mask") if "lung_mask" in artifacts else None,
        outlines_url=f"/v1/jobs/{job.id}/viewer/outlines"
        if document and SEG_ARTIFACT in artifacts else None,
        labels=meta.get("labels", {}), lung_volumes_ml=meta.get("lung_volumes_ml", {}),
        findings=findings, findings_source=RESULT_ARTIFACT if document else None,
        case=document.case.model_dump(mode="json", by_alias=True) if document else None,
        model=document.model.model_dump(mode="json") if document else None,
        downloads=downloads, original=original_info(job.id, meta, job.inputs))


def _array_response(request: Request, job_id: str, name: str, session: Session, tenant_id: str,
                    store: Any) -> Response:
    job = load_job(session, tenant_id, job_id)
    artifacts = artifacts_of(session, job.id)
    require_viewable(job, artifacts)
    if name not in artifacts:
        raise NotFound(f"The job has no {name.replace('_', ' ')}.", code="artifact_not_found")
    data = store.get_bytes(artifacts[name].object_key)
    audit(session, request, tenant_id, actor_for(request), "read",
          f"jobs/{job.id}/viewer/{name}", 200)
    session.commit()
    return array_response(data, ARRAYS[name])


def array_response(npz: bytes, array: str) -> Response:
    """The answer for one array of a stored ``.npz``: its ``.npy`` as raw DEFLATE."""
    body, inflated = npz_member_deflate(npz, array)
    return Response(body, media_type="application/octet-stream", headers={
        "X-LungCAD-Format": "npy", "X-LungCAD-Encoding": "deflate-raw",
        "X-LungCAD-Inflated-Length": str(inflated), "Cache-Control": "private, no-store"})


@router.get("/v1/jobs/{job_id}/viewer/volume", responses={
    **PROBLEMS, 200: {"content": {"application/octet-stream": {}},
                      "description": "Raw DEFLATE of a .npy: int16 HU (z, y, x)"}},
    response_class=Response, summary="The analysed volume, compressed")
def viewer_volume(job_id: str, request: Request, session: SessionDep, tenant: TenantDep,
                  store: StoreDep) -> Response:
    return _array_response(request, job_id, "volume", session, tenant.id, store)


@router.get("/v1/jobs/{job_id}/viewer/mask", responses={
    **PROBLEMS, 200: {"content": {"application/octet-stream": {}},
                      "description": "Raw DEFLATE of a .npy: uint8 labels (z, y, x)"}},
    response_class=Response, summary="The lung mask, compressed")
def viewer_mask(job_id: str, request: Request, session: SessionDep, tenant: TenantDep,
                store: StoreDep) -> Response:
    return _array_response(request, job_id, "lung_mask", session, tenant.id, store)



@router.get("/v1/jobs/{job_id}/viewer/outlines", response_model=grid_outlines.GridOutlines,
            responses=PROBLEMS,
            summary="The findings' masks (DICOM SEG) on the viewer's 1 mm grid")
def viewer_outlines(job_id: str, request: Request, session: SessionDep, tenant: TenantDep,
                    store: StoreDep) -> grid_outlines.GridOutlines:
    """Per finding, its segmentation mapped onto the 1 mm grid of ``/viewer/volume`` (each
    voxel takes the SEG value of its nearest native pixel) as a box of grid voxels and its
    run-length mask; a finding without a segment (or a job without a SEG) has no box, and the
    viewer draws its circle instead. No DICOM image is decoded: the SEG's frames are placed by
    the slice table preprocessing kept. 409 ``outlines_undecodable`` when the stored SEG cannot
    be read, ``outlines_not_on_series`` when its frames do not lie on the analysed slices."""
    job = load_job(session, tenant.id, job_id)
    artifacts = artifacts_of(session, job.id)
    require_viewable(job, artifacts)
    meta = load_meta(store, artifacts)
    findings = load_findings(store, artifacts)
    seg = load_seg(store, artifacts) if findings is not None else None
    answer = grid_outlines.outlines(meta, slice_table(meta), seg,
                                    [f.id for f in findings.findings] if findings else [])
    audit(session, request, tenant.id, actor_for(request), "read",
          f"jobs/{job.id}/viewer/outlines", 200)
    session.commit()
    return answer
