"""API schemas shared by the gateway, the CLI and the tests (JobPublic / JobsPublic / Problem)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Problem(BaseModel):
    """RFC 9457 problem details, with LungCAD's stable machine-readable ``code``."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    code: str = Field(description="Stable machine-readable error code, e.g. `not_ct`.")
    instance: str | None = None


class JobInputPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    ordinal: int
    kind: str
    size: int
    sha256: str


class DeliveryPublic(BaseModel):
    """The results (SR, SEG) of the job sent by C-STORE to one PACS destination."""

    model_config = ConfigDict(from_attributes=True)

    destination: str = Field(description="AE_TITLE@host:port")
    state: str = Field(description="pending | delivered | delivery_failed")
    attempts: int
    last_status: str | None = Field(default=None, description="The last attempt's outcome: a "
                                    "C-STORE status (0x0000 is success) or why it failed.")


class JobPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    state: str = Field(description="queued | preprocessing | inferring | succeeded | failed | "
                                   "canceled")
    stage: str
    progress: int = Field(ge=0, le=100, description="Percent of the whole job.")
    attempts: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error_code: str | None = None
    error_message: str | None = None
    input_format: str
    input_bytes: int
    patient_id: str | None = None
    study_instance_uid: str | None = None
    study_date: str | None = None
    series_description: str | None = None
    requested_series_uid: str | None = None
    callback_url: str | None = None
    deleted: bool = False
    timings_s: dict[str, Any] = Field(default_factory=dict)
    inputs: list[JobInputPublic] = Field(default_factory=list)
    deliveries: list[DeliveryPublic] = Field(default_factory=list)
    links: dict[str, str] = Field(default_factory=dict)


class JobsPublic(BaseModel):
    data: list[JobPublic]
    count: int = Field(description="Jobs matching the filters (all pages).")
    limit: int
    offset: int


class ArtifactPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    content_type: str
    size: int
    sha256: str
    url: str


class ArtifactsPublic(BaseModel):
    data: list[ArtifactPublic]


class WebhookEvent(BaseModel):
    """The JSON body POSTed to a job's callback URL on each terminal state."""

    event: str = Field(description="job.succeeded | job.failed | job.canceled")
    delivery_id: int
    timestamp: datetime
    job: JobPublic
