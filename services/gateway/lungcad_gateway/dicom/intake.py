"""A sealed study to a job, through the upload's own ingest (``ingest_files``).

The idempotency key is derived from the study and its SOP instance UIDs, so a resend of the
same instances answers the job they already made (the API's rule for a repeated key), and a
batch re-ingested after a crash (job committed, spool not yet cleared) makes no second job.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from lungcad.db.models import AuditEvent, Job
from lungcad.db.types import utcnow
from lungcad.storage.base import CHUNK
from lungcad_gateway.auth import get_or_create_tenant
from lungcad_gateway.dicom.spool import Batch
from lungcad_gateway.ingest import JobOptions, ingest_files
from lungcad_gateway.multipart import SpooledFile
from lungcad_gateway.runtime import Runtime

log = logging.getLogger(__name__)
HASH_THREADS = 4


def idempotency_key(study_uid: str, sop_uids: list[str]) -> str:
    digest = hashlib.sha256("\n".join([study_uid, *sorted(sop_uids)]).encode()).hexdigest()
    return f"dicom-{digest}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _staged(batch: Batch, staging: Path) -> list[SpooledFile]:
    """Hard links of the batch's files: the store may move what it is given (a local store
    renames), and the batch must stay whole until its job is committed. Hashed on a few
    threads (hashlib releases the GIL): this is most of the intake's time on a large study."""
    staging.mkdir(parents=True, exist_ok=True)
    links = []
    for path in batch.files():
        link = staging / path.name
        try:
            os.link(path, link)
        except OSError:  # another file system: a copy
            shutil.copyfile(path, link)
        links.append(link)
    with ThreadPoolExecutor(max_workers=HASH_THREADS) as pool:
        digests = list(pool.map(_sha256, links))
    return [SpooledFile(link, link.name, link.stat().st_size, digest)
            for link, digest in zip(links, digests, strict=True)]


@dataclass(frozen=True)
class Admitted:
    job: Job
    created: bool


def audit(runtime: Runtime, tenant_id: str | None, actor: str, action: str, resource: str,
          outcome: int, address: str | None) -> None:
    """One audit event for something the listener did (the API's trail, one table)."""
    with runtime.sessions() as session:
        session.add(AuditEvent(created_at=utcnow(), tenant_id=tenant_id, actor=actor[:200],
                               action=action, resource=resource[:300], outcome=outcome,
                               address=address[:64] if address else None))
        session.commit()


def batch_to_job(runtime: Runtime, batch: Batch, staging_root: Path,
                 actor: str = "dicom listener") -> Admitted:
    """Make (or find) the batch's job. Raises InvalidInput when the ingest refuses the study
    (the caller keeps the batch aside) and any other error when a dependency is down (the
    caller retries the batch later)."""
    with runtime.sessions() as session:
        tenant = get_or_create_tenant(session, batch.tenant)
        session.commit()
    staging = staging_root / batch.path.name
    try:
        files = _staged(batch, staging)
        job, created = ingest_files(runtime, tenant, files, JobOptions(),
                                    idempotency_key(batch.study_uid, batch.sop_uids()))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if created:
        audit(runtime, tenant.id, actor, "write", f"/v1/jobs/{job.id}", 202, None)
    return Admitted(job, created)
