"""Zip archives: inspection and extraction that refuse bombs, path traversal and symlinks."""

from __future__ import annotations

import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from lungcad.errors import InvalidInput
from lungcad.settings import Settings

_RATIO_MIN_ENTRY = 64 * 1024 * 1024  # binary SEG masks compress ~400:1; only big entries
_RATIO_MIN_TOTAL = 64 * 1024 * 1024


@dataclass(frozen=True)
class ZipLimits:
    max_entries: int
    max_expanded_bytes: int
    max_ratio: float

    @classmethod
    def from_settings(cls, settings: Settings) -> ZipLimits:
        return cls(settings.max_zip_entries, settings.max_zip_expanded_bytes,
                   settings.max_zip_ratio)


def _entry_path(info: zipfile.ZipInfo) -> PurePosixPath:
    name = info.filename.replace("\\", "/")
    path = PurePosixPath(name)
    if name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in path.parts:
        raise InvalidInput(f"The zip entry {info.filename!r} points outside the archive "
                           "(absolute path or '..'); such archives are refused.", code="zip_slip")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise InvalidInput(f"The zip entry {info.filename!r} is a symbolic link; links are "
                           "refused.", code="zip_symlink")
    return path


def _is_nested_archive(info: zipfile.ZipInfo) -> bool:
    return info.filename.lower().endswith((".zip", ".tar", ".tgz", ".tar.gz", ".7z", ".rar"))


def check_zip(zf: zipfile.ZipFile, limits: ZipLimits) -> list[zipfile.ZipInfo]:
    """Validate the central directory; return the regular-file entries in archive order.

    Raises InvalidInput: too_many_files, zip_slip, zip_symlink, zip_bomb, nested_archive.
    The declared sizes are checked here; safe_extract also enforces the real sizes.
    """
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise InvalidInput(f"The zip holds {len(infos)} entries; the limit is "
                           f"{limits.max_entries}.", code="too_many_files")
    files = []
    expanded = compressed = 0
    for info in infos:
        _entry_path(info)
        if info.is_dir():
            continue
        if _is_nested_archive(info):
            raise InvalidInput(f"The zip contains another archive ({info.filename!r}); upload "
                               "one flat zip of the DICOM folder.", code="nested_archive")
        expanded += info.file_size
        compressed += info.compress_size
        if info.file_size > _RATIO_MIN_ENTRY and info.file_size > limits.max_ratio * max(
                info.compress_size, 1):
            raise InvalidInput(f"The zip entry {info.filename!r} expands {info.file_size} bytes "
                               f"from {info.compress_size}: over the compression-ratio limit "
                               f"({limits.max_ratio:g}).", code="zip_bomb")
        files.append(info)
    if expanded > limits.max_expanded_bytes:
        raise InvalidInput(f"The zip expands to {expanded} bytes; the limit is "
                           f"{limits.max_expanded_bytes}.", code="zip_bomb")
    if expanded > _RATIO_MIN_TOTAL and expanded > limits.max_ratio * max(compressed, 1):
        raise InvalidInput("The zip's overall compression ratio is over the limit "
                           f"({limits.max_ratio:g}).", code="zip_bomb")
    return files


def open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InvalidInput(f"The zip archive cannot be read ({exc}); it may be truncated.",
                           code="invalid_zip") from exc


def safe_extract(zip_path: Path, dest_dir: Path, settings: Settings) -> list[Path]:
    """Extract a checked zip under ``dest_dir``; return the extracted file paths.

    Real decompressed sizes are enforced while writing, so a lying central directory cannot
    fill the disk. Nothing is written outside ``dest_dir``.
    """
    limits = ZipLimits.from_settings(settings)
    dest = dest_dir.resolve()
    dest.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    total = 0
    with open_zip(zip_path) as zf:
        for info in check_zip(zf, limits):
            target = (dest / _entry_path(info)).resolve()
            if dest not in target.parents:
                raise InvalidInput(f"The zip entry {info.filename!r} escapes the extraction "
                                   "folder.", code="zip_slip")
            target.parent.mkdir(parents=True, exist_ok=True)
            budget = info.file_size
            try:
                with zf.open(info) as src, open(target, "wb") as out:
                    while chunk := src.read(1024 * 1024):
                        budget -= len(chunk)
                        total += len(chunk)
                        if budget < 0 or total > limits.max_expanded_bytes:
                            raise InvalidInput(f"The zip entry {info.filename!r} expands beyond "
                                               "its declared size or the limit.", code="zip_bomb")
                        out.write(chunk)
            except (zipfile.BadZipFile, EOFError, OSError) as exc:
                if isinstance(exc, OSError) and exc.errno is not None:
                    raise
                raise InvalidInput(f"The zip entry {info.filename!r} is corrupt or truncated "
                                   f"({exc}).", code="truncated_file") from exc
            os.chmod(target, 0o600)
            written.append(target)
    return written
