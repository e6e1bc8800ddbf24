"""Accepting a study: check its files, store them, then create the job, its inputs and its
dispatch outbox row in one transaction.

Every way in takes this path: an HTTP upload (``accept_upload``: streamed to a spool folder
first), a STOW-RS request and a study received by the DICOM listener (``ingest_files``). One
inspection (``inspect_upload``) validates the files; one function (``admit``) stores them and
creates the job, with the API's idempotency rule: a repeated key answers the job it made.

Nothing is left behind by a refused upload: no job row, no stored object, no spool file.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

from fastapi import Request
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from lungcad.celery_app import TASK_PREPROCESS
from lungcad.db.models import Job, JobInput, JobState, Tenant, new_id
from lungcad.db.types import utcnow
from lungcad.errors import InvalidInput, PayloadTooLarge
from lungcad.ingest.inspect import EXTENSIONS, UploadPart, UploadSummary, inspect_upload
from lungcad.jobs import enqueue_stage
from lungcad.settings import Settings
from lungcad.storage import StorageUnavailable, StoredObject
from lungcad_gateway.idempotency import find_job, replay, request_sha256
from lungcad_gateway.multipart import ParsedForm, SpooledFile, read_form
from lungcad_gateway.runtime import Runtime
from lungcad_gateway.webhook_target import checked_address

log = logging.getLogger(__name__)
ALLOWED_FIELDS = {"series_instance_uid", "patient_age", "patient_sex", "callback_url"}
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


@dataclass(frozen=True)
class JobOptions:
    series_instance_uid: str | None = None
    patient_age: int | None = None
    patient_sex: str | None = None
    callback_url: str | None = None


def parse_options(fields: dict[str, str]) -> JobOptions:
    unknown = sorted(set(fields) - ALLOWED_FIELDS)
    if unknown:
        raise InvalidInput(f"Unknown form field(s): {', '.join(unknown)}. Allowed: files, "
                           f"{', '.join(sorted(ALLOWED_FIELDS))}.", code="unknown_field",
                           status=400)
    uid = fields.get("series_instance_uid", "").strip() or None
    if uid is not None and (len(uid) > 64 or not _UID.match(uid)):
        raise InvalidInput("series_instance_uid is not a DICOM UID.", code="invalid_field")
    age = fields.get("patient_age", "").strip() or None
    age_value = None
    if age is not None:
        if not age.isdigit() or not 0 <= int(age) <= 130:
            raise InvalidInput("patient_age must be a whole number of years, 0 to 130.",
                               code="invalid_field")
        age_value = int(age)
    sex = (fields.get("patient_sex", "").strip().upper() or None)
    if sex is not None and sex not in ("M", "F", "O"):
        raise InvalidInput("patient_sex must be M, F or O.", code="invalid_field")
    url = fields.get("callback_url", "").strip() or None
    if url is not None:
        if not _is_http_url(url):
            raise InvalidInput("callback_url must be an absolute http(s) URL with a valid "
                               "host name and port.", code="invalid_field")
    return JobOptions(uid, age_value, sex, url)


def check_callback(url: str | None, settings: Settings) -> None:
    """Refuse a ``callback_url`` that resolves to a refused address (422
    ``callback_url_refused``). A name that does not resolve now is accepted: DNS may be down a
    moment, and each send checks again."""
    if url is None:
        return
    try:
        checked_address(url, settings.webhook_allow_networks)
    except OSError as exc:
        log.warning("callback_url host does not resolve at submit: %s", exc)


def _is_http_url(url: str) -> bool:
    parsed = urlparse(url)
    try:
        _ = parsed.port  # in range
        (parsed.hostname or "").encode("idna")  # labels of 1 to 63 characters
    except (ValueError, UnicodeError):
        return False
    return parsed.scheme in ("http", "https") and bool(parsed.hostname) and len(url) <= 2000


class PhaseTimer:
    """Wall time of the upload's phases, answered as a ``Server-Timing`` header so an
    integrator can see where an upload's time went. receive: the body read, parsed, hashed and
    written; inspect: the headers checked while the fsyncs finish; store: the objects stored;
    commit: the job row and its outbox row committed."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self._last = time.perf_counter()

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.phases[name] = (now - self._last) * 1000
        self._last = now


def server_timing(phases: dict[str, float]) -> str:
    return ", ".join(f"{name};dur={ms:.1f}" for name, ms in phases.items())


def _store_parts(runtime: Runtime, job_id: str, files: list[SpooledFile],
                 kinds: list[str]) -> list[tuple[StoredObject, str, str | None]]:
    """Store each (fsynced, hashed) file; a local store moves it rather than copying."""
    stored: list[tuple[StoredObject, str, str | None]] = []
    try:
        for ordinal, (part, kind) in enumerate(zip(files, kinds, strict=True)):
            ext = EXTENSIONS.get(kind, ".bin" if kind != "dicom_maybe" else ".dcm")
            key = f"jobs/{job_id}/input/{ordinal:05d}{ext}"
            obj = runtime.store.put_file(key, part.path, sha256=part.sha256)
            if obj.sha256 != part.sha256 or obj.size != part.size:
                raise InvalidInput("The stored bytes differ from the received bytes.",
                                   code="checksum_mismatch", status=500)
            stored.append((obj, "dicom" if kind == "dicom_maybe" else kind, part.original_name))
    except BaseException:
        _delete_quietly(runtime, [s[0].key for s in stored])
        raise
    return stored


def _delete_quietly(runtime: Runtime, keys: list[str]) -> None:
    for key in keys:
        try:
            runtime.store.delete(key)
        except Exception:  # noqa: BLE001 - best effort cleanup; logged
            log.exception("could not delete %s after a refused upload", key)


def _create_job(runtime: Runtime, tenant: Tenant, job_id: str, options: JobOptions,
                summary: UploadSummary, stored: list[tuple[StoredObject, str, str | None]],
                idempotency_key: str | None, fingerprint: str) -> Job:
    settings = runtime.settings
    now = utcnow()
    with runtime.sessions() as session:
        job = Job(
            id=job_id, tenant_id=tenant.id, state=JobState.QUEUED, stage="queued", progress=0,
            attempts=1, created_at=now, updated_at=now,
            deadline_at=now + timedelta(seconds=settings.queued_deadline_s),
            idempotency_key=idempotency_key, request_sha256=fingerprint,
            callback_url=options.callback_url,
            requested_series_uid=options.series_instance_uid, patient_age=options.patient_age,
            patient_sex=options.patient_sex, input_format=summary.format,
            input_bytes=sum(obj.size for obj, _, _ in stored), patient_id=summary.patient_id,
            study_instance_uid=summary.study_uid, study_date=summary.study_date,
            series_description=summary.series_description, timings_s={},
            details={"modalities": summary.modalities, "dicom_files": summary.dicom_files,
                     "patient": {"age": summary.patient_age, "sex": summary.patient_sex}},
        )
        session.add(job)
        for ordinal, (obj, kind, name) in enumerate(stored):
            session.add(JobInput(job_id=job_id, ordinal=ordinal, object_key=obj.key, kind=kind,
                                 size=obj.size, sha256=obj.sha256, original_name=name))
        enqueue_stage(session, job, TASK_PREPROCESS)
        session.commit()
        session.refresh(job)
        _ = job.inputs, job.deliveries  # loaded for the answer, made after the session closes
        return job


async def _inspect_while_settling(form: ParsedForm, settings: Settings) -> UploadSummary:
    """Check the received files (from the page cache) while their fsyncs finish: the disk
    flush, usually the longest wait of a large upload, overlaps the header checks."""
    parts = [UploadPart(f.path, f.original_name, f.size) for f in form.files]
    inspected, settled = await asyncio.gather(run_in_threadpool(inspect_upload, parts, settings),
                                              form.settle(), return_exceptions=True)
    for outcome in (inspected, settled):  # the upload's own fault first, then the disk's
        if isinstance(outcome, BaseException):
            raise outcome
    return inspected  # type: ignore[return-value]


def _new_spool(settings: Settings) -> Path:
    """A private folder for one upload's files: under the local store (same file system: the
    files are then stored by rename) or in the spool folder. A folder that cannot be made is
    storage that is down."""
    root = settings.upload_spool_dir or (settings.data_dir / "spool")
    if settings.storage_backend == "local":
        root = settings.objects_dir / ".spool"
    try:
        root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="upload-", dir=root))
    except OSError as exc:
        raise StorageUnavailable(f"the upload folder {root} cannot be written: {exc}") from exc


def admit(runtime: Runtime, tenant: Tenant, files: list[SpooledFile], summary: UploadSummary,
          options: JobOptions, idempotency_key: str | None, fingerprint: str,
          timer: PhaseTimer | None = None) -> tuple[Job, bool]:
    """Store inspected files and create their job. Returns (job, created): ``created`` is False
    when a concurrent request with the same idempotency key won (its job is answered)."""
    timer = timer or PhaseTimer()
    job_id = new_id()
    stored = _store_parts(runtime, job_id, files, summary.kinds)
    timer.mark("store")
    try:
        job = _create_job(runtime, tenant, job_id, options, summary, stored, idempotency_key,
                          fingerprint)
        timer.mark("commit")
    except IntegrityError:
        _delete_quietly(runtime, [s[0].key for s in stored])
        existing = find_job(runtime, tenant, idempotency_key)
        if existing is None:
            raise
        return replay(existing, fingerprint), False
    except BaseException:
        _delete_quietly(runtime, [s[0].key for s in stored])
        raise
    runtime.wake_relay.set()
    log.info("job accepted", extra={"job_id": job.id, "tenant_id": tenant.id,
                                    "bytes": job.input_bytes, "format": job.input_format})
    return job, True


def ingest_files(runtime: Runtime, tenant: Tenant, files: list[SpooledFile],
                 options: JobOptions, idempotency_key: str | None) -> tuple[Job, bool]:
    """A study already on disk (fsynced, each file's SHA-256 known) to a job: the same
    inspection, storage and transaction as an upload. Returns (job, created)."""
    fingerprint = request_sha256(options, files)
    existing = find_job(runtime, tenant, idempotency_key)
    if existing is not None:
        return replay(existing, fingerprint), False
    parts = [UploadPart(f.path, f.original_name, f.size) for f in files]
    summary = inspect_upload(parts, runtime.settings)
    return admit(runtime, tenant, files, summary, options, idempotency_key, fingerprint)


@dataclass(frozen=True)
class Accepted:
    job: Job
    created: bool  # False for an idempotent replay
    summary: UploadSummary | None  # None for a replay (the body was not inspected)


async def accept_upload(request: Request, runtime: Runtime, tenant: Tenant,
                        idempotency_key: str | None, timer: PhaseTimer,
                        part_type: bytes | None = None) -> Accepted:
    """Receive, inspect, store and admit one upload. ``created`` is False for an idempotent
    replay (the body is read all the same: its hash must match the first request's). ``timer``
    gets the wall time of each phase. ``part_type``: a multipart/related body (STOW-RS) of
    parts of this media type, instead of a form; only DICOM instances are then accepted."""
    settings = runtime.settings
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > settings.max_upload_bytes:
        raise PayloadTooLarge(f"The upload declares {declared} bytes; the limit is "
                              f"{settings.max_upload_bytes}.")
    spool = _new_spool(settings)
    form: ParsedForm | None = None
    try:
        form = await read_form(request.stream(), request.headers.get("content-type", ""), spool,
                               settings.max_upload_bytes, settings.max_files,
                               settings.max_form_fields, part_type=part_type)
        timer.mark("receive")
        options = parse_options(form.fields)
        existing = await run_in_threadpool(find_job, runtime, tenant, idempotency_key)
        if existing is not None:
            await form.settle()
            return Accepted(replay(existing, request_sha256(options, form.files)), False,
                            None)
        await run_in_threadpool(check_callback, options.callback_url, settings)
        summary = await _inspect_while_settling(form, settings)
        if part_type is not None and summary.format != "dicom":
            raise InvalidInput(f"A {summary.format} part is not a DICOM instance: STOW-RS takes "
                               "DICOM instances, one per part.", code="unsupported_format")
        fingerprint = request_sha256(options, form.files)
        timer.mark("inspect")
        job, created = await run_in_threadpool(admit, runtime, tenant, form.files, summary,
                                               options, idempotency_key, fingerprint, timer)
        return Accepted(job, created, summary)
    finally:
        if form is not None:
            form.close()
        shutil.rmtree(spool, ignore_errors=True)
