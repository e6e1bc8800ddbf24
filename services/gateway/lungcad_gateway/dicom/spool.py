"""The listener's spool: every acknowledged instance is on disk (fsynced) before its success
status, grouped by tenant and study.

Layout under the root:

- ``incoming/``: instances being written (not yet acknowledged; cleared at start);
- ``open/<tenant>/<study>/<sop>.dcm``: acknowledged instances of a study still receiving;
- ``sealed/<tenant>/<study>~<token>/``: a study whose quiet period ended, to become one job;
- ``refused/<tenant>/<study>~<token>/``: a study the ingest refused, with ``reason.txt``.

Moves between them are renames on one file system, each followed by an fsync of the folders, so
after a crash every acknowledged instance is in exactly one open or sealed study.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from lungcad.storage.local import fsync_dir

UID = re.compile(r"[0-9]+(\.[0-9]+)*")


def is_uid(value: object) -> bool:
    """A DICOM UID: digits and dots, at most 64 characters (a trailing newline is not one)."""
    return isinstance(value, str) and 0 < len(value) <= 64 and UID.fullmatch(value) is not None


def _make_dirs(path: Path) -> None:
    """Create ``path`` and its missing parents, each made durable in its parent."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        folder.mkdir(exist_ok=True)
        fsync_dir(folder.parent)


@dataclass(frozen=True)
class Batch:
    """One sealed study: the files of one job."""

    tenant: str
    study_uid: str
    path: Path

    def files(self) -> list[Path]:
        return sorted(p for p in self.path.iterdir() if p.suffix == ".dcm")

    def sop_uids(self) -> list[str]:
        return [p.stem for p in self.files()]


@dataclass(frozen=True)
class OpenStudy:
    tenant: str
    study_uid: str
    last_arrival: float  # wall-clock time of its newest instance (its file's mtime)


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.incoming = root / "incoming"
        self.open = root / "open"
        self.sealed = root / "sealed"
        self.refused = root / "refused"
        for folder in (self.incoming, self.open, self.sealed, self.refused):
            _make_dirs(folder)

    def clear_incoming(self) -> int:
        """Drop partial writes of a previous run (never acknowledged). Returns their count."""
        count = 0
        for leftover in self.incoming.iterdir():
            leftover.unlink(missing_ok=True)
            count += 1
        return count

    def write_temp(self, data: bytes | memoryview) -> Path:
        """Write one instance's bytes to ``incoming/`` and fsync them."""
        path = self.incoming / f"{secrets.token_hex(12)}.part"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        return path

    def place(self, temp: Path, tenant: str, study_uid: str, sop_uid: str) -> Path:
        """Move a written instance into its open study (a resent instance replaces the copy
        there). Durable when this returns: the instance may then be acknowledged."""
        if not is_uid(study_uid) or not is_uid(sop_uid):
            raise ValueError("study and SOP instance UIDs must be DICOM UIDs")
        folder = self.open / tenant / study_uid
        _make_dirs(folder)
        target = folder / f"{sop_uid}.dcm"
        os.replace(temp, target)
        fsync_dir(folder)
        return target

    def seal(self, tenant: str, study_uid: str) -> Batch | None:
        """Close an open study into a batch (None when it has no open folder)."""
        source = self.open / tenant / study_uid
        if not source.is_dir():
            return None
        parent = self.sealed / tenant
        _make_dirs(parent)
        target = parent / f"{study_uid}~{secrets.token_hex(6)}"
        os.replace(source, target)
        fsync_dir(parent)
        fsync_dir(source.parent)
        return Batch(tenant, study_uid, target)

    def open_studies(self) -> list[OpenStudy]:
        studies = []
        for tenant_dir in sorted(p for p in self.open.iterdir() if p.is_dir()):
            for study_dir in sorted(p for p in tenant_dir.iterdir() if p.is_dir()):
                times = [f.stat().st_mtime for f in study_dir.iterdir()]
                if not times:
                    study_dir.rmdir()
                    continue
                studies.append(OpenStudy(tenant_dir.name, study_dir.name, max(times)))
        return studies

    def sealed_batches(self) -> list[Batch]:
        return [Batch(tenant_dir.name, batch.name.split("~", 1)[0], batch)
                for tenant_dir in sorted(p for p in self.sealed.iterdir() if p.is_dir())
                for batch in sorted(p for p in tenant_dir.iterdir() if p.is_dir())]

    def discard(self, batch: Batch) -> None:
        """Remove a batch that is now a job."""
        shutil.rmtree(batch.path)
        fsync_dir(batch.path.parent)

    def refuse(self, batch: Batch, reason: str) -> Path:
        """Keep a refused batch aside (for the administrator), with the reason."""
        parent = self.refused / batch.tenant
        _make_dirs(parent)
        target = parent / batch.path.name
        os.replace(batch.path, target)
        (target / "reason.txt").write_text(reason + "\n")
        fsync_dir(parent)
        return target
