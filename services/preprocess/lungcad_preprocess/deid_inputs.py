"""Replace a job's stored DICOM originals by de-identified copies.

On with ``LUNGCAD_DEIDENTIFY_ORIGINALS``.

For each DICOM input (a file, or a zip of a DICOM folder) not yet scrubbed: download it, scrub
every DICOM file with :mod:`deid` (PS3.15 basic profile, UIDs replaced by a salted hash so the
mapping is stable), store the copy under a new key, then in ONE transaction point the input row
at the new object and record its SHA-256 in ``deid_sha256``; only then delete the original.
``JobInput.sha256`` keeps the hash of the bytes as received (what the client sent, for audit).
A crash at any point leaves either the original or the scrubbed copy referenced, never neither;
a rerun skips inputs whose ``deid_sha256`` is set, so UIDs are never hashed twice.
Non-DICOM inputs (NIfTI, MetaImage, NRRD) carry no patient header and are left as they are.
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from lungcad.db.models import Job, JobInput
from lungcad.errors import ProcessingError
from lungcad.storage import ObjectStore
from lungcad_preprocess.deid import deidentify_file

log = logging.getLogger(__name__)
CLEAN_PREAMBLE = b"\0" * 128


def _scrub_file(src: Path, dst: Path, salt: bytes) -> bool:
    """Scrub one file; False when it is not DICOM (copied as is)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        pydicom.dcmread(src, stop_before_pixels=True)
    except (InvalidDicomError, EOFError, OSError, ValueError):
        dst.write_bytes(src.read_bytes())
        return False
    try:
        deidentify_file(src, dst, salt)
    except Exception as exc:  # noqa: BLE001 - any pydicom failure fails the job, specifically
        raise ProcessingError(f"A DICOM file could not be de-identified ({type(exc).__name__}: "
                              f"{str(exc)[:200]}).", code="deidentification_failed") from exc
    with dst.open("r+b") as fh:  # the preamble is free text: never keep the client's
        fh.write(CLEAN_PREAMBLE)
    return True


def _scrub_zip(src: Path, dst: Path, work: Path, settings: Any) -> int:
    from lungcad.ingest.archive import safe_extract

    folder = work / "unzipped"
    files = safe_extract(src, folder, settings)
    salt = settings.deid_uid_salt.encode()
    count = 0
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as out:
        for index, path in enumerate(sorted(files)):
            scrubbed = work / f"s{index:06d}"
            count += _scrub_file(path, scrubbed, salt)
            # Member names are generated: a folder name may itself identify the patient.
            out.write(scrubbed, f"{index:06d}.dcm")
            scrubbed.unlink()
    return count


def deidentify_inputs(session: Session, job: Job, objects: ObjectStore, work: Path,
                      settings: Any) -> int:
    """Scrub the job's DICOM inputs in place (see the module docstring); returns how many
    inputs were replaced."""
    replaced = 0
    for row in sorted(job.inputs, key=lambda r: r.ordinal):
        if row.deid_sha256 is not None or row.kind not in ("dicom", "zip"):
            continue
        src = work / f"in-{row.ordinal:05d}"
        dst = work / f"out-{row.ordinal:05d}"
        with src.open("wb") as fh:
            for chunk in objects.iter_chunks(row.object_key):
                fh.write(chunk)
        if row.kind == "zip":
            (work / "zip").mkdir(exist_ok=True)
            _scrub_zip(src, dst, work / "zip", settings)
            suffix = ".zip"
        else:
            _scrub_file(src, dst, settings.deid_uid_salt.encode())
            suffix = ".dcm"
        old_key = row.object_key
        stored = objects.put_file(f"jobs/{job.id}/input-deid/{row.ordinal:05d}{suffix}", dst)
        fresh = session.get(JobInput, row.id)
        assert fresh is not None
        fresh.object_key = stored.key
        fresh.deid_sha256 = stored.sha256
        session.commit()
        if old_key != stored.key:
            objects.delete(old_key)
        src.unlink(missing_ok=True)
        replaced += 1
    if replaced:
        log.info("originals de-identified", extra={"job_id": job.id, "inputs": replaced})
    return replaced
