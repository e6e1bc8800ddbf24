"""/v1/jobs/{id}/feedback: a radiologist accepts or rejects findings and adds missed nodules.

Every entry is kept (never updated): the list is the audit trail, the newest entry per finding
is its current verdict. Each write also records an ``AuditEvent``.

Positions: a missed nodule is sent either as ``index_zyx`` in the viewer grid (what the dashboard
clicks on) or as ``center_mm`` (patient LPS). Both are stored the way the findings document
states them: ``center_mm`` LPS, ``center_voxel`` ``[column, row, slice]`` in the original series.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import func, select

from lungcad.db.models import FindingFeedback
from lungcad.errors import InvalidInput
from lungcad.imaging.geometry import Geometry
from lungcad.imaging.slices import SliceTable
from lungcad_gateway.deps import SessionDep, StoreDep, TenantDep
from lungcad_gateway.routes.session import actor_for, audit
from lungcad_gateway.routes.viewer import (
    PROBLEMS,
    artifacts_of,
    load_findings,
    load_job,
    load_meta,
    require_viewable,
)

router = APIRouter(prefix="/v1/jobs/{job_id}/feedback", tags=["feedback"])
BODY_PROBLEMS = {**PROBLEMS, 400: PROBLEMS[401]}  # 400 bad_request: a body that is not JSON
Triple = Annotated[list[float], Field(min_length=3, max_length=3)]


class FeedbackCreate(BaseModel):
    action: Literal["accept", "reject", "add", "withdraw"] = Field(
        description="withdraw: take back a missed nodule added earlier (finding_id M<n>); the "
                    "trail keeps both entries")
    finding_id: Annotated[str | None, Field(max_length=20)] = None
    index_zyx: Triple | None = Field(None, description="add: the point in the viewer grid")
    center_mm: Triple | None = Field(None, description="add: the point in patient LPS mm")
    note: Annotated[str | None, Field(max_length=2000)] = None

    @model_validator(mode="after")
    def _check(self) -> FeedbackCreate:
        if self.action == "add":
            if self.finding_id is not None:
                raise ValueError("'add' creates a new finding; leave finding_id out")
            if (self.index_zyx is None) == (self.center_mm is None):
                raise ValueError("'add' needs exactly one of index_zyx or center_mm")
        elif not self.finding_id:
            raise ValueError(f"'{self.action}' needs the finding_id")
        return self


class FeedbackPublic(BaseModel):
    id: int
    job_id: str
    finding_id: str | None
    action: str
    center_mm: list[float] | None = None
    center_voxel: list[int] | None = Field(None, description="[column, row, slice], original "
                                                             "series")
    index_zyx: list[float] | None = Field(None, description="In the viewer grid")
    sop_instance_uid: str | None = Field(None, description="The original slice at the point")
    instance_number: int | None = Field(None, description="That slice's InstanceNumber: the "
                                                          "image number PACS shows")
    note: str | None
    actor: str
    created_at: datetime


class FeedbackList(BaseModel):
    data: list[FeedbackPublic] = Field(description="Oldest first: the audit trail")
    verdicts: dict[str, str] = Field(description="finding_id -> its latest accept/reject")


def _public(row: FindingFeedback, grid: Geometry | None) -> FeedbackPublic:
    mm = (row.center_mm or {}).get("lps")
    index = [round(float(v), 2) for v in grid.world_to_index(mm)] if (mm and grid) else None
    original = row.center_voxel or {}
    return FeedbackPublic(id=row.id, job_id=row.job_id, finding_id=row.finding_id,
                          action=row.action, center_mm=mm,
                          center_voxel=original.get("column_row_slice"),
                          sop_instance_uid=original.get("sop_instance_uid"),
                          instance_number=original.get("instance_number"),
                          index_zyx=index, note=row.note, actor=row.actor,
                          created_at=row.created_at)


def _original_voxel(point: np.ndarray, meta: dict[str, Any]) -> dict[str, Any]:
    """Where an LPS point lies in the original series: ``column_row_slice``, and the slice's
    ``sop_instance_uid`` and ``instance_number`` (None for a volume without DICOM slices)."""
    source = meta.get("source", {})
    if source.get("slices"):
        hit = SliceTable.from_dict(source["slices"]).locate(point)
        return {"column_row_slice": [round(hit.column), round(hit.row), hit.index],
                "sop_instance_uid": hit.sop_instance_uid,
                "instance_number": hit.instance_number}
    z, y, x = Geometry.from_dict(source["geometry"]).world_to_voxel(point)
    return {"column_row_slice": [int(x), int(y), int(z)], "sop_instance_uid": None,
            "instance_number": None}


@router.get("", response_model=FeedbackList, responses=PROBLEMS,
            summary="The feedback on a job's findings (audit trail)")
def list_feedback(job_id: str, session: SessionDep, tenant: TenantDep,
                  store: StoreDep) -> FeedbackList:
    job = load_job(session, tenant.id, job_id)
    artifacts = artifacts_of(session, job.id)
    grid = Geometry.from_dict(load_meta(store, artifacts)["geometry"]) \
        if "preprocess.json" in artifacts else None
    rows = session.scalars(select(FindingFeedback).where(
        FindingFeedback.job_id == job.id, FindingFeedback.tenant_id == tenant.id)
        .order_by(FindingFeedback.created_at, FindingFeedback.id)).all()
    verdicts = {r.finding_id: r.action for r in rows
                if r.finding_id and r.action in ("accept", "reject")}
    return FeedbackList(data=[_public(r, grid) for r in rows], verdicts=verdicts)


@router.post("", status_code=201, response_model=FeedbackPublic, responses=BODY_PROBLEMS,
             summary="Accept or reject a finding, add a missed nodule or withdraw one added")
def create_feedback(job_id: str, body: FeedbackCreate, request: Request, response: Response,
                    session: SessionDep, tenant: TenantDep, store: StoreDep) -> FeedbackPublic:
    job = load_job(session, tenant.id, job_id)
    artifacts = artifacts_of(session, job.id)
    require_viewable(job, artifacts)
    meta = load_meta(store, artifacts)
    grid = Geometry.from_dict(meta["geometry"])
    actor = actor_for(request)
    row = FindingFeedback(job_id=job.id, tenant_id=tenant.id, action=body.action,
                          note=body.note, actor=actor)
    if body.action == "add":
        point = (grid.index_to_world(body.index_zyx) if body.index_zyx is not None
                 else np.asarray(body.center_mm, float))
        if not bool(grid.contains_index(grid.world_to_index(point))):
            raise InvalidInput("The point lies outside the analysed volume.",
                               code="point_outside_volume")
        added = session.scalar(select(func.count()).select_from(FindingFeedback).where(
            FindingFeedback.job_id == job.id, FindingFeedback.action == "add")) or 0
        row.finding_id = f"M{added + 1}"
        row.center_mm = {"lps": [round(float(v), 2) for v in point]}
        row.center_voxel = _original_voxel(point, meta)
    elif body.action == "withdraw":
        entries = session.scalars(select(FindingFeedback.action).where(
            FindingFeedback.job_id == job.id, FindingFeedback.finding_id == body.finding_id,
            FindingFeedback.action.in_(("add", "withdraw")))).all()
        if entries != ["add"]:
            raise InvalidInput(f"The job has no added nodule {body.finding_id!r} to withdraw.",
                               code="finding_not_found")
        row.finding_id = body.finding_id
    else:
        document = load_findings(store, artifacts)
        known = {f.id: f for f in document.findings} if document else {}
        if body.finding_id not in known:
            raise InvalidInput(f"The job has no finding {body.finding_id!r}.",
                               code="finding_not_found")
        row.finding_id = body.finding_id
        finding = known[body.finding_id]
        row.center_mm = {"lps": finding.center_mm}
        row.center_voxel = {"column_row_slice": finding.center_voxel,
                            "sop_instance_uid": finding.sop_instance_uid,
                            "instance_number": finding.instance_number}
    session.add(row)
    audit(session, request, tenant.id, actor, "write",
          f"jobs/{job.id}/feedback/{body.action}/{row.finding_id}", 201)
    session.commit()
    response.headers["Location"] = f"/v1/jobs/{job.id}/feedback"
    return _public(row, grid)
