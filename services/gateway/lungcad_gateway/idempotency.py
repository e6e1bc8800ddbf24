"""Idempotency-Key: a retried submission returns the job its first request created.

The key is bound to that request: the SHA-256 of its parts (content hashes and sizes, in order)
and its validated form fields is stored with the job (``request_sha256``). The same key with a
different request is refused (``idempotency_key_reused``); the same key after the job was
deleted is refused too (``job_deleted``), never answered as if the deleted job were new. Keys
live as long as their job row, which is never deleted (retention deletes the data, not the row).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING

from sqlalchemy import select

from lungcad.db.models import Job, Tenant
from lungcad.errors import InvalidInput, LungcadError

if TYPE_CHECKING:
    from lungcad_gateway.ingest import JobOptions
    from lungcad_gateway.multipart import SpooledFile
    from lungcad_gateway.runtime import Runtime

MAX_KEY_LENGTH = 200


def check_key(key: str | None) -> None:
    if key is not None and len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(f"Idempotency-Key is longer than {MAX_KEY_LENGTH} characters.",
                           code="invalid_header", status=400)


def request_sha256(options: JobOptions, files: Sequence[SpooledFile]) -> str:
    """The fingerprint of a submission: what the job would analyse and how (file names are
    left out: the same bytes under another name are the same study)."""
    request = {"fields": asdict(options), "files": [[f.sha256, f.size] for f in files]}
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()


def find_job(runtime: Runtime, tenant: Tenant, key: str | None) -> Job | None:
    if not key:
        return None
    with runtime.sessions() as session:
        return session.scalars(select(Job).where(Job.tenant_id == tenant.id,
                                                 Job.idempotency_key == key)).first()


def replay(job: Job, fingerprint: str) -> Job:
    """``job`` when this request repeats the one that created it; else a specific refusal."""
    if job.deleted_at is not None:
        raise LungcadError(f"The job {job.id} created with this Idempotency-Key was deleted; "
                           "send the study again with a new key.", code="job_deleted",
                           status=410, job_id=job.id)
    if job.request_sha256 is not None and job.request_sha256 != fingerprint:
        raise InvalidInput(f"This Idempotency-Key created job {job.id} from a different request "
                           "(other files or fields); use a new key for a new request.",
                           code="idempotency_key_reused", job_id=job.id)
    return job
