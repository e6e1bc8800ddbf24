"""The DICOMweb index: which DICOM instances each job of a tenant holds in object storage (its
DICOM inputs, files or zip entries, and its SR and SEG results), kept in the
``dicom_instances`` table.

The index follows the stored objects on each DICOMweb read (:func:`sync_tenant`): an object not
yet indexed is read once (headers only); the rows of an object no longer stored (an input
replaced by its de-identified copy, the data of a deleted job) are dropped. The UIDs come from
the stored headers, never from the job row: de-identification replaces them.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import IO, Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from sqlalchemy import delete, literal, select, union_all
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lungcad.db.models import Artifact, DicomInstance, Job, JobInput
from lungcad.storage import ObjectNotFound, ObjectStore
from lungcad.storage.ranged import open_ranged

log = logging.getLogger(__name__)
DICOM_INPUTS = ("dicom", "zip")
DICOM_MEDIA = "application/dicom"
STUDY_KEYWORDS = ("StudyDate", "StudyTime", "AccessionNumber", "ReferringPhysicianName",
                  "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                  "StudyInstanceUID", "StudyID", "StudyDescription")
SERIES_KEYWORDS = ("Modality", "SeriesInstanceUID", "SeriesNumber", "SeriesDescription")
INSTANCE_KEYWORDS = ("SOPClassUID", "SOPInstanceUID", "InstanceNumber", "Rows", "Columns",
                     "NumberOfFrames", "BitsAllocated")


@dataclass(frozen=True)
class Entry:
    """One indexed instance, detached from the session (answers stream after it closes)."""

    job_id: str
    object_key: str
    member: str
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    attributes: dict[str, Any]

    @property
    def instance_number(self) -> int:
        value = self.attributes.get("00200013", {}).get("Value", [0])
        return int(value[0]) if value and value[0] is not None else 0


def _qido_attributes(ds: Dataset) -> dict[str, Any]:
    subset = Dataset()
    for keyword in (*STUDY_KEYWORDS, *SERIES_KEYWORDS, *INSTANCE_KEYWORDS):
        if keyword in ds:
            subset[keyword] = ds[keyword]
    return subset.to_json_dict()  # type: ignore[no-any-return]


def _header(handle: IO[bytes]) -> Dataset | None:
    try:
        ds = pydicom.dcmread(handle, stop_before_pixels=True, force=True)
    except (InvalidDicomError, ValueError, EOFError, OSError, KeyError, TypeError):
        return None
    if not all(k in ds for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")):
        return None
    return ds


def _row(job_id: str, tenant_id: str, key: str, member: str, ds: Dataset | None
         ) -> DicomInstance:
    if ds is None:
        return DicomInstance(job_id=job_id, tenant_id=tenant_id, object_key=key, member=member,
                             attributes={})
    return DicomInstance(job_id=job_id, tenant_id=tenant_id, object_key=key, member=member,
                         study_uid=str(ds.StudyInstanceUID), series_uid=str(ds.SeriesInstanceUID),
                         sop_instance_uid=str(ds.SOPInstanceUID),
                         sop_class_uid=str(ds.get("SOPClassUID", "")) or None,
                         attributes=_qido_attributes(ds))


def _read_object(store: ObjectStore, job_id: str, tenant_id: str, key: str, kind: str
                 ) -> list[DicomInstance]:
    """Headers only: a file's first bytes, a zip's directory and its members' first bytes."""
    if kind != "zip":
        with open_ranged(store, key) as handle:
            return [_row(job_id, tenant_id, key, "", _header(handle))]
    rows = []
    with open_ranged(store, key) as handle, zipfile.ZipFile(handle) as archive:
        # A name the archive repeats: its last entry, the one reading by name returns.
        named = {info.filename: info for info in archive.infolist() if not info.is_dir()}
        for info in named.values():
            with archive.open(info) as entry:
                ds = _header(entry)  # type: ignore[arg-type]
            if ds is not None:
                rows.append(_row(job_id, tenant_id, key, info.filename, ds))
    return rows or [_row(job_id, tenant_id, key, "", None)]


def _stored_objects(session: Session, tenant_id: str) -> set[tuple[str, str, str]]:
    """(job ID, object key, kind) of every stored object of the tenant's live jobs that may
    hold DICOM instances."""
    live = (Job.tenant_id == tenant_id) & Job.deleted_at.is_(None)
    inputs = (select(JobInput.job_id, JobInput.object_key, JobInput.kind).join(Job)
              .where(live, JobInput.kind.in_(DICOM_INPUTS)))
    results = (select(Artifact.job_id, Artifact.object_key, literal("dicom")).join(Job)
               .where(live, Artifact.content_type == DICOM_MEDIA))
    return {(r[0], r[1], r[2]) for r in session.execute(union_all(inputs, results))}


def sync_tenant(session: Session, store: ObjectStore, tenant_id: str) -> None:
    """Bring the tenant's index in step with its stored objects (see the module docstring)."""
    stored = _stored_objects(session, tenant_id)
    indexed = set(session.execute(select(DicomInstance.job_id, DicomInstance.object_key)
                                  .where(DicomInstance.tenant_id == tenant_id).distinct()))
    current = {(job_id, key) for job_id, key, _ in stored}
    for job_id, key in indexed - current:
        session.execute(delete(DicomInstance).where(DicomInstance.job_id == job_id,
                                                    DicomInstance.object_key == key))
    session.commit()
    for job_id, key, kind in sorted(stored):
        if (job_id, key) in indexed:
            continue
        try:
            rows = _read_object(store, job_id, tenant_id, key, kind)
        except (ObjectNotFound, zipfile.BadZipFile) as exc:  # deleted meanwhile, or unreadable
            log.warning("not indexed for DICOMweb: %s (%s)", key, exc)
            continue
        session.add_all(rows)
        try:
            session.commit()
        except IntegrityError:  # another request indexed it first
            session.rollback()


def forget_job(session: Session, job_id: str) -> None:
    """Drop a job's rows (with its data: they hold patient attributes), in the caller's
    transaction."""
    session.execute(delete(DicomInstance).where(DicomInstance.job_id == job_id))


def find(session: Session, tenant_id: str, study: str | None = None, series: str | None = None,
         sop: str | None = None) -> list[Entry]:
    """The tenant's indexed instances (of live jobs) matching the UIDs given, one per SOP
    Instance UID (the newest job's when a study was sent twice), in series and instance order."""
    query = (select(DicomInstance).join(Job)
             .where(DicomInstance.tenant_id == tenant_id, Job.tenant_id == tenant_id,
                    Job.deleted_at.is_(None), DicomInstance.sop_instance_uid.is_not(None))
             .order_by(Job.created_at.desc(), DicomInstance.id))
    if study is not None:
        query = query.where(DicomInstance.study_uid == study)
    if series is not None:
        query = query.where(DicomInstance.series_uid == series)
    if sop is not None:
        query = query.where(DicomInstance.sop_instance_uid == sop)
    entries: dict[str, Entry] = {}
    for row in session.scalars(query):
        if row.sop_instance_uid not in entries:
            entries[row.sop_instance_uid] = Entry(  # type: ignore[index]
                row.job_id, row.object_key, row.member, row.study_uid or "",
                row.series_uid or "", row.sop_instance_uid or "", row.sop_class_uid or "",
                row.attributes)
    return sorted(entries.values(), key=lambda e: (e.series_uid, e.instance_number,
                                                  e.sop_instance_uid))


def read_instances(store: ObjectStore, entries: list[Entry]) -> Iterator[tuple[Entry, bytes]]:
    """Each entry's stored bytes, in order; of a zip input only its directory and the members
    asked for are read. An object deleted since the index was read (its job deleted meanwhile)
    is skipped."""
    with ExitStack() as stack:
        archives: dict[str, zipfile.ZipFile | None] = {}
        for entry in entries:
            try:
                if not entry.member:
                    yield entry, store.get_bytes(entry.object_key)
                    continue
                if entry.object_key not in archives:
                    archives[entry.object_key] = stack.enter_context(zipfile.ZipFile(
                        stack.enter_context(open_ranged(store, entry.object_key))))
            except ObjectNotFound:
                archives[entry.object_key] = None
            archive = archives.get(entry.object_key)
            if archive is not None:
                yield entry, archive.read(entry.member)
