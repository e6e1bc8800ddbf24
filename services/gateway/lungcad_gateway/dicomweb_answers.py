"""The bodies of the DICOMweb read answers (PS3.18): QIDO-RS results at the study, series and
instance level with their matching, WADO-RS metadata, frames and bulk data, and the
multipart/related encoding of retrieved parts."""

from __future__ import annotations

import fnmatch
import io
import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.pixels import pack_bits, pixel_array

from lungcad.errors import InvalidInput, LungcadError, NotFound
from lungcad_gateway.dicomweb_index import (
    INSTANCE_KEYWORDS,
    SERIES_KEYWORDS,
    STUDY_KEYWORDS,
    Entry,
)

OCTETS = "application/octet-stream"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
MODALITIES_IN_STUDY, RETRIEVE_URL = "00080061", "00081190"
STUDY_SERIES, STUDY_INSTANCES, SERIES_INSTANCES = "00201206", "00201208", "00201209"
PAGING = ("limit", "offset", "includefield", "fuzzymatching")


def _tags(keywords: Iterable[str]) -> list[str]:
    return [f"{tag_for_keyword(k):08X}" for k in keywords]


STUDY_TAGS, SERIES_TAGS = _tags(STUDY_KEYWORDS), _tags(SERIES_KEYWORDS)
INSTANCE_TAGS = _tags(INSTANCE_KEYWORDS)
STUDY_UID_TAG, SERIES_UID_TAG = _tags(["StudyInstanceUID", "SeriesInstanceUID"])


def _pick(attributes: dict[str, Any], tags: list[str]) -> dict[str, Any]:
    return {t: attributes[t] for t in tags if t in attributes}


def _count(value: int) -> dict[str, Any]:
    return {"vr": "IS", "Value": [value]}


def _grouped(entries: list[Entry], level: str) -> dict[str, list[Entry]]:
    """``entries`` by their ``study_uid`` or ``series_uid``, in order."""
    groups: dict[str, list[Entry]] = {}
    for entry in entries:
        groups.setdefault(getattr(entry, level), []).append(entry)
    return groups


def study_results(entries: list[Entry], base_url: str) -> list[dict[str, Any]]:
    """One QIDO-RS study result per study of ``entries``."""
    results = []
    for uid, members in _grouped(entries, "study_uid").items():
        result = _pick(members[0].attributes, STUDY_TAGS)
        modalities = sorted({m.attributes.get("00080060", {}).get("Value", [""])[0]
                             for m in members} - {""})
        result[MODALITIES_IN_STUDY] = {"vr": "CS", "Value": modalities}
        result[STUDY_SERIES] = _count(len({m.series_uid for m in members}))
        result[STUDY_INSTANCES] = _count(len(members))
        result[RETRIEVE_URL] = {"vr": "UR", "Value": [f"{base_url}/studies/{uid}"]}
        results.append(result)
    return results


def series_results(entries: list[Entry], base_url: str) -> list[dict[str, Any]]:
    """One QIDO-RS series result per series of ``entries``."""
    results = []
    for uid, members in _grouped(entries, "series_uid").items():
        result = _pick(members[0].attributes, [STUDY_UID_TAG, *SERIES_TAGS])
        result[SERIES_INSTANCES] = _count(len(members))
        result[RETRIEVE_URL] = {"vr": "UR", "Value": [
            f"{base_url}/studies/{members[0].study_uid}/series/{uid}"]}
        results.append(result)
    return results


def instance_results(entries: list[Entry], base_url: str) -> list[dict[str, Any]]:
    return [{**_pick(e.attributes, [STUDY_UID_TAG, SERIES_UID_TAG, *INSTANCE_TAGS]),
             RETRIEVE_URL: {"vr": "UR", "Value": [instance_url(base_url, e)]}}
            for e in entries]


def instance_url(base_url: str, entry: Entry) -> str:
    return (f"{base_url}/studies/{entry.study_uid}/series/{entry.series_uid}"
            f"/instances/{entry.sop_instance_uid}")


def _query_tag(name: str) -> str | None:
    if len(name) == 8 and all(c in "0123456789abcdefABCDEF" for c in name):
        return name.upper()
    tag = tag_for_keyword(name)
    return f"{tag:08X}" if tag is not None else None


def _values(element: dict[str, Any]) -> list[str]:
    values = []
    for value in element.get("Value", []):
        values.append(str(value.get("Alphabetic", "")) if isinstance(value, dict) else str(value))
    return values


def _matches(element: dict[str, Any] | None, wanted: str) -> bool:
    """PS3.4 C.2.2.2 matching of one attribute: a UID list (``\\``), a range (``a-b``) for
    dates and times, wildcards ``*`` and ``?`` (case-insensitive for names), else single value."""
    values = _values(element or {})
    vr = (element or {}).get("vr", "")
    if vr == "UI":
        return bool(set(values) & set(wanted.replace(",", "\\").split("\\")))
    if vr in ("DA", "TM", "DT") and "-" in wanted:
        low, _, high = wanted.partition("-")
        return any((not low or v >= low) and (not high or v <= high) for v in values)
    if "*" in wanted or "?" in wanted:
        fold = str.lower if vr == "PN" else str
        return any(fnmatch.fnmatchcase(fold(v), fold(wanted)) for v in values)
    return wanted in values


def filter_results(results: list[dict[str, Any]], params: Iterable[tuple[str, str]],
                   limit: int | None, offset: int) -> list[dict[str, Any]]:
    """The results matching every query key (unknown keys and empty values match all), paged."""
    keys = []
    for name, value in params:
        if name in PAGING or not value:
            continue
        tag = _query_tag(name)
        if tag is None:
            raise InvalidInput(f"{name!r} is not a DICOM attribute keyword or tag.",
                               code="invalid_query_key", status=400)
        keys.append((tag, value))
    matched = [r for r in results if all(_matches(r.get(t), v) for t, v in keys)]
    return matched[offset:offset + limit if limit is not None else None]


# -- WADO-RS -----------------------------------------------------------------------------------
def multipart(parts: Iterable[bytes], part_type: str) -> tuple[Iterator[bytes], str]:
    """A multipart/related body of ``parts`` (each of ``part_type``) and its Content-Type."""
    boundary = secrets.token_hex(16)

    def body() -> Iterator[bytes]:
        for data in parts:
            yield (f"--{boundary}\r\nContent-Type: {part_type}\r\n"
                   f"Content-Length: {len(data)}\r\n\r\n").encode() + data + b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    media = part_type.split(";")[0]
    return body(), f'multipart/related; type="{media}"; boundary={boundary}'


def read_dataset(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data), force=True)


def metadata(ds: Dataset, bulk_url: Callable[[str], str]) -> dict[str, Any]:
    """The instance as DICOM JSON with its binary values over 1 KiB (pixel data included) as
    BulkDataURIs; its transfer syntax as (0002,0010)."""

    def handler(element: DataElement) -> str:
        return bulk_url(f"{element.tag:08X}")

    body: dict[str, Any] = ds.to_json_dict(bulk_data_threshold=1024,
                                           bulk_data_element_handler=handler)
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax:
        body["00020010"] = {"vr": "UI", "Value": [str(syntax)]}
    return dict(sorted(body.items()))


def bulk_value(ds: Dataset, tag: str) -> bytes:
    """The raw value of a top-level binary element, e.g. ``7FE00010``."""
    element = ds.get(int(tag, 16)) if re.fullmatch(r"[0-9A-Fa-f]{8}", tag) else None
    if element is None or not isinstance(element.value, bytes):
        raise NotFound(f"The instance has no bulk data element {tag[:8]}.",
                       code="bulkdata_not_found")
    return element.value


def frame_bytes(ds: Dataset, frames: list[int]) -> list[bytes]:
    """The uncompressed pixel data (explicit VR little endian) of each 1-based frame; a 1-bit
    frame (a binary SEG) bit-packed on its own."""
    if "PixelData" not in ds:
        raise NotFound("The instance has no pixel data.", code="frame_not_found")
    count = int(ds.get("NumberOfFrames", 1) or 1)
    beyond = [f for f in frames if f > count]
    if beyond:
        raise NotFound(f"The instance has {count} frame(s); frame {beyond[0]} does not exist.",
                       code="frame_not_found")
    syntax = ds.file_meta.TransferSyntaxUID
    bits = int(ds.BitsAllocated)
    if syntax.is_little_endian and not syntax.is_compressed and bits % 8 == 0:
        size = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * bits // 8
        return [ds.PixelData[(f - 1) * size:f * size] for f in frames]
    out = []
    for f in frames:
        try:
            array = pixel_array(ds, index=f - 1, raw=True)
        except (NotImplementedError, RuntimeError, ValueError) as exc:
            raise LungcadError(f"The frame cannot be decoded here ({exc}); retrieve the "
                               "instance instead.", code="frame_not_decodable", status=406
                               ) from exc
        out.append(pack_bits(array) if bits == 1 else np.ascontiguousarray(array).tobytes())
    return out
