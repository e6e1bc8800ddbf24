"""Typed ORM models. The gateway owns the Alembic migrations that create these tables."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from lungcad.db.types import UTCDateTime, utcnow


def new_id() -> str:
    return str(uuid.uuid4())


_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def is_id(value: str) -> bool:
    """Whether ``value`` has the shape of :func:`new_id`'s IDs. A path parameter that has not
    matches no row and is answered without a query (a NUL in it was a 500 on Postgres)."""
    return _ID.fullmatch(value) is not None


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


class JobState(StrEnum):
    QUEUED = "queued"
    PREPROCESSING = "preprocessing"
    INFERRING = "inferring"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELED})


class OutboxKind(StrEnum):
    DISPATCH = "dispatch"  # publish a Celery task (payload: task, queue, job_id, attempt)
    WEBHOOK = "webhook"  # POST a signed event to the job's callback URL
    DICOM = "dicom"  # plan the C-STOREs of a succeeded job's SR and SEG to its PACS


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    webhook_secret: Mapped[str] = mapped_column(String(128))
    # After a rotation, webhooks are also signed with the previous secret until this time.
    previous_webhook_secret: Mapped[str | None] = mapped_column(String(128))
    previous_webhook_secret_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    api_keys: Mapped[list[ApiKey]] = relationship(back_populates="tenant")


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]

    tenant: Mapped[Tenant] = relationship(back_populates="api_keys")


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key", name="uq_jobs_tenant_idempotency"),
        Index("ix_jobs_tenant_created", "tenant_id", "created_at"),
        Index("ix_jobs_state_deadline", "state", "deadline_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(20), default=JobState.QUEUED)
    stage: Mapped[str] = mapped_column(String(40), default="queued")
    progress: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    deadline_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]
    # Lease held by the worker running the current stage: no two workers run a job at once.
    lease_token: Mapped[str | None] = mapped_column(String(36))
    lease_expires_at: Mapped[datetime | None]
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    # SHA-256 of the creating request (parts and fields): a reused key must repeat it.
    request_sha256: Mapped[str | None] = mapped_column(String(64))
    callback_url: Mapped[str | None] = mapped_column(String(2000))
    # Caller's request.
    requested_series_uid: Mapped[str | None] = mapped_column(String(64))
    patient_age: Mapped[int | None] = mapped_column(Integer)
    patient_sex: Mapped[str | None] = mapped_column(String(1))
    # What was uploaded (filled at ingest from headers; shown in the worklist).
    input_format: Mapped[str] = mapped_column(String(20))
    input_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    patient_id: Mapped[str | None] = mapped_column(String(200))
    study_instance_uid: Mapped[str | None] = mapped_column(String(64))
    study_date: Mapped[str | None] = mapped_column(String(8))
    series_description: Mapped[str | None] = mapped_column(String(200))
    # Filled by the workers.
    timings_s: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    inputs: Mapped[list[JobInput]] = relationship(back_populates="job", order_by="JobInput.ordinal")
    artifacts: Mapped[list[Artifact]] = relationship(back_populates="job")
    deliveries: Mapped[list[DicomDelivery]] = relationship(order_by="DicomDelivery.id",
                                                           viewonly=True)


class JobInput(Base):
    """One stored upload part: its server-generated key and the SHA-256 of its bytes."""

    __tablename__ = "job_inputs"
    __table_args__ = (UniqueConstraint("job_id", "ordinal", name="uq_job_inputs_ordinal"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    ordinal: Mapped[int] = mapped_column(Integer)
    object_key: Mapped[str] = mapped_column(String(512), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))  # of the bytes as received
    original_name: Mapped[str | None] = mapped_column(String(500))
    # Of the stored object after de-identification (LUNGCAD_DEIDENTIFY_ORIGINALS), else None.
    deid_sha256: Mapped[str | None] = mapped_column(String(64))

    job: Mapped[Job] = relationship(back_populates="inputs")


class Artifact(Base):
    """A result file of a job (findings JSON, SR, SEG, key images, preprocessed arrays)."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("job_id", "name", name="uq_artifacts_job_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    object_key: Mapped[str] = mapped_column(String(512))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    public: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    job: Mapped[Job] = relationship(back_populates="artifacts")


class OutboxMessage(Base):
    """Transactional outbox: written with the job change, published by the relay."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_pending", "published_at", "available_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(20))
    job_id: Mapped[str] = mapped_column(String(36), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    available_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    published_at: Mapped[datetime | None]
    gave_up_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class WebhookAttempt(Base):
    """Every webhook delivery attempt, successful or not."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    outbox_id: Mapped[int] = mapped_column(ForeignKey("outbox.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[str] = mapped_column(String(36), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    event: Mapped[str] = mapped_column(String(40))
    attempt: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DicomDelivery(Base):
    """The results (SR, SEG) of a succeeded job sent by C-STORE to one PACS destination.
    ``history``: every attempt (time, outcome), in order."""

    __tablename__ = "dicom_deliveries"
    __table_args__ = (
        UniqueConstraint("job_id", "destination", name="uq_dicom_deliveries_job_destination"),
        Index("ix_dicom_deliveries_due", "state", "available_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    destination: Mapped[str] = mapped_column(String(200))  # AE@host:port
    state: Mapped[str] = mapped_column(String(20))  # pending | delivered | delivery_failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status: Mapped[str | None] = mapped_column(String(500))
    history: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    available_at: Mapped[datetime] = mapped_column(default=utcnow)


class DicomInstance(Base):
    """One DICOM instance a job holds in object storage (an original in its inputs, or its SR or
    SEG), for the DICOMweb read endpoints: its UIDs, where it is stored (``member``: its entry in
    a zip input, else empty) and its QIDO-RS attributes (DICOM JSON). A row without
    ``sop_instance_uid`` marks an object that was read and holds no DICOM instance."""

    __tablename__ = "dicom_instances"
    __table_args__ = (
        UniqueConstraint("job_id", "object_key", "member", name="uq_dicom_instances_object"),
        Index("ix_dicom_instances_tenant_study", "tenant_id", "study_uid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[str] = mapped_column(String(36))
    object_key: Mapped[str] = mapped_column(String(512), index=True)
    member: Mapped[str] = mapped_column(String(500), default="")
    study_uid: Mapped[str | None] = mapped_column(String(64))
    series_uid: Mapped[str | None] = mapped_column(String(64))
    sop_instance_uid: Mapped[str | None] = mapped_column(String(64))
    sop_class_uid: Mapped[str | None] = mapped_column(String(64))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FindingRow(Base):
    """One finding of a succeeded job: the numbers of the findings document, queryable."""

    __tablename__ = "findings"
    __table_args__ = (UniqueConstraint("job_id", "finding_id", name="uq_findings_job_finding"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    finding_id: Mapped[str] = mapped_column(String(20))
    model_version: Mapped[str] = mapped_column(String(40))
    center_mm: Mapped[dict[str, Any]] = mapped_column(JSON)
    center_voxel: Mapped[dict[str, Any]] = mapped_column(JSON)
    sop_instance_uid: Mapped[str | None] = mapped_column(String(64))
    diameter_mm: Mapped[float]
    short_axis_mm: Mapped[float]
    volume_mm3: Mapped[float]
    mean_hu: Mapped[float]
    nodule_type: Mapped[str] = mapped_column(String(20))
    location: Mapped[dict[str, Any]] = mapped_column(JSON)
    margin: Mapped[dict[str, Any]] = mapped_column(JSON)
    nodule_probability: Mapped[float]
    malignancy_probability: Mapped[float]
    brock_probability: Mapped[float]
    lung_rads: Mapped[str] = mapped_column(String(4))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FindingFeedback(Base):
    """A radiologist's verdict on a finding, or a nodule the model missed (audit trail)."""

    __tablename__ = "finding_feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[str] = mapped_column(String(36), index=True)
    finding_id: Mapped[str | None] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(10))  # accept | reject | add
    center_mm: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    center_voxel: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    note: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEvent(Base):
    """Who did what to which patient data, when, from where, and how it ended."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_tenant_time", "tenant_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    tenant_id: Mapped[str | None] = mapped_column(String(36))
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(40))  # read | write | export | delete | auth
    resource: Mapped[str] = mapped_column(String(300))
    outcome: Mapped[int] = mapped_column(Integer)  # HTTP status
    address: Mapped[str | None] = mapped_column(String(64))
