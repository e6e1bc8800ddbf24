"""Download a job's stored inputs into a private folder that :func:`preprocess_path` can read.

Names on disk are generated here, never taken from the client, except that a MetaImage header's
``ElementDataFile`` is rewritten to the generated name of the matching data file.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Protocol

from lungcad.errors import ProcessingError
from lungcad.storage import ObjectStore

_DATA_FILE = re.compile(r"^(\s*ElementDataFile\s*=\s*)(.+?)\s*$", re.M)


class InputRow(Protocol):
    ordinal: int
    object_key: str
    kind: str
    original_name: str | None


def _basename(name: str | None) -> str:
    return PureWindowsPath(PurePosixPath(name or "").name).name


def _download(store: ObjectStore, key: str, dest: Path) -> Path:
    with dest.open("wb") as fh:
        for chunk in store.iter_chunks(key):
            fh.write(chunk)
    return dest


def materialise_inputs(store: ObjectStore, inputs: Sequence[InputRow], folder: Path,
                       settings: Any) -> Path:
    """Write every input under ``folder`` (zips extracted safely); return the folder to read."""
    folder.mkdir(parents=True, exist_ok=True)
    raw_names: dict[str, str] = {}
    headers: list[Path] = []
    for row in sorted(inputs, key=lambda r: r.ordinal):
        n = f"{row.ordinal:05d}"
        if row.kind == "zip":
            from lungcad.ingest.archive import safe_extract

            archive = _download(store, row.object_key, folder.parent / f"{n}.zip")
            safe_extract(archive, folder / f"zip{n}", settings)
            archive.unlink()
        elif row.kind == "dicom":
            _download(store, row.object_key, folder / f"{n}.dcm")
        elif row.kind == "nifti":
            target = _download(store, row.object_key, folder / f"{n}.nii")
            with target.open("rb") as fh:
                if fh.read(2) == b"\x1f\x8b":
                    target.rename(folder / f"{n}.nii.gz")
        elif row.kind in ("mha", "nrrd"):
            _download(store, row.object_key, folder / f"{n}.{row.kind}")
        elif row.kind == "metaimage_header":
            headers.append(_download(store, row.object_key, folder / f"{n}.mhd"))
        elif row.kind == "metaimage_raw":
            suffix = ".zraw" if _basename(row.original_name).lower().endswith(".zraw") else ".raw"
            _download(store, row.object_key, folder / f"{n}{suffix}")
            raw_names[_basename(row.original_name)] = f"{n}{suffix}"
        else:
            raise ProcessingError(f"Input kind {row.kind!r} is not supported.",
                                  code="unsupported_input")
    for header in headers:
        _relink_metaimage(header, raw_names)
    return folder


def _relink_metaimage(header: Path, raw_names: dict[str, str]) -> None:
    text = header.read_bytes()[:65536].decode("latin-1")
    match = _DATA_FILE.search(text)
    if match is None:
        raise ProcessingError("The MetaImage header has no ElementDataFile.",
                              code="unreadable_image")
    wanted = _basename(match.group(2))
    if wanted.upper() == "LOCAL":
        return
    if wanted not in raw_names:
        raise ProcessingError(f"The MetaImage data file {wanted!r} was not uploaded.",
                              code="missing_data_file")
    header.write_bytes(_DATA_FILE.sub(lambda m: m.group(1) + raw_names[wanted], text, count=1)
                       .encode("latin-1"))
