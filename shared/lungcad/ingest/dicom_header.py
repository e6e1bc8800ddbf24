"""Read a DICOM header without its pixels and check that the pixel data is all there."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

import pydicom
from pydicom.errors import InvalidDicomError

from lungcad.errors import InvalidInput

CT_SOP_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image Storage
    "1.2.840.10008.5.1.4.1.1.2.2",  # Legacy Converted Enhanced CT Image Storage
})
# Objects that travel with a CT study but are not images to analyse.
NON_IMAGE_MODALITIES = frozenset({"SEG", "SR", "RTSTRUCT", "PR", "KO", "REG", "RTPLAN", "DOC"})
MAX_PIXELS_PER_FRAME = 4096 * 4096


@dataclass(frozen=True)
class DicomSummary:
    sop_class_uid: str
    modality: str
    study_uid: str | None
    series_uid: str | None
    patient_id: str | None
    study_date: str | None
    series_description: str | None
    is_image: bool
    patient_age: int | None = None
    patient_sex: str | None = None

    @property
    def is_ct_image(self) -> bool:
        return self.is_image and self.sop_class_uid in CT_SOP_CLASSES

    @property
    def is_companion(self) -> bool:
        """A non-image object (SEG, SR, dose report...) that may travel with a CT study."""
        return not self.is_image


def _text(ds: pydicom.Dataset, keyword: str, limit: int) -> str | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    return str(value)[:limit]


def parse_age(value: object) -> int | None:
    """DICOM AS ("067Y", "006M", "010W", "003D") to whole years; None when absent or odd."""
    text = str(value or "").strip().upper()
    if len(text) != 4 or not text[:3].isdigit() or text[3] not in "DWMY":
        return None
    number = int(text[:3])
    years = {"Y": number, "M": number // 12, "W": number // 52, "D": number // 365}[text[3]]
    return years if 0 <= years <= 130 else None


def parse_sex(value: object) -> str | None:
    text = str(value or "").strip().upper()
    return text if text in ("M", "F", "O") else None


def _native_pixel_bytes(ds: pydicom.Dataset) -> int | None:
    """Bytes the uncompressed pixel data must hold, or None when compressed/unknown."""
    meta = getattr(ds, "file_meta", None)
    syntax = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    if syntax is not None and getattr(syntax, "is_compressed", False):
        return None
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        bits = int(ds.BitsAllocated)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        return None
    return rows * cols * samples * frames * max(bits, 8) // 8


# The 128-byte preamble is free for applications; an executable header there makes the file
# runnable as a program (PE "MZ", ELF, Mach-O, a script). Only these are refused: TIFF headers and
# zeros are legitimate preambles.
EXECUTABLE_MAGIC = (b"MZ", b"\x7fELF", b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf",
                    b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe", b"#!")


def read_summary(stream: BinaryIO, size: int, name: str) -> DicomSummary | None:
    """Return the summary of a DICOM file, or None when the bytes are not DICOM at all.

    Raises InvalidInput(truncated_file) when a DICOM file stops before its pixel data ends,
    InvalidInput(dimensions_too_large) for absurd frame sizes, and InvalidInput(invalid_dicom)
    when pydicom fails on a corrupt element (elements are decoded lazily, on first access, so a
    hostile value can raise anything from NotImplementedError to RecursionError there).
    """
    try:
        return _read_summary(stream, size, name)
    except InvalidInput:
        raise
    except Exception as exc:  # noqa: BLE001 - hostile input must become a 422, never a 500
        raise InvalidInput(f"{name}: the DICOM header is corrupt ({type(exc).__name__}: "
                           f"{str(exc)[:200]}).", code="invalid_dicom") from exc


def _read_summary(stream: BinaryIO, size: int, name: str) -> DicomSummary | None:
    head = stream.read(132)
    stream.seek(0)
    has_preamble = len(head) == 132 and head[128:132] == b"DICM"
    if has_preamble and head.startswith(EXECUTABLE_MAGIC):
        raise InvalidInput(f"{name}: the DICOM preamble holds an executable header (a DICOM/"
                           "executable polyglot, CVE-2019-11687); such files are refused.",
                           code="executable_preamble")
    try:
        ds = pydicom.dcmread(stream, stop_before_pixels=True, force=not has_preamble)
        position = stream.tell()
    except InvalidDicomError:
        return None
    except (EOFError, OSError, ValueError, KeyError, TypeError, AttributeError, IndexError,
            OverflowError, NotImplementedError, RecursionError, struct.error) as exc:
        if has_preamble:
            raise InvalidInput(f"{name}: the DICOM header is truncated or corrupt ({exc}).",
                               code="truncated_file") from exc
        return None
    sop_class = str(ds.get("SOPClassUID", "") or getattr(
        getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "") or "")
    if not sop_class and not has_preamble:
        return None  # forced parse of arbitrary bytes: not DICOM
    modality = str(ds.get("Modality", "") or "").upper()
    is_image = "Rows" in ds and "Columns" in ds and modality not in NON_IMAGE_MODALITIES
    if not is_image and sop_class in CT_SOP_CLASSES:
        raise InvalidInput(f"{name}: the CT file ends before its image (no Rows, Columns or "
                           "pixel data).", code="truncated_file")
    if is_image:
        try:
            frame = int(ds.Rows) * int(ds.Columns)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"{name}: Rows/Columns are not numbers.",
                               code="invalid_dicom") from exc
        if frame > MAX_PIXELS_PER_FRAME:
            raise InvalidInput(f"{name}: {ds.Rows} x {ds.Columns} pixels per frame is beyond "
                               "any CT reconstruction.", code="dimensions_too_large")
        remaining = size - position
        expected = _native_pixel_bytes(ds)
        if remaining <= 8 or (expected is not None and remaining < expected + 8):
            raise InvalidInput(f"{name}: the file ends before its pixel data does (has "
                               f"{max(remaining, 0)} bytes, needs {expected}).",
                               code="truncated_file")
    return DicomSummary(
        sop_class_uid=sop_class, modality=modality,
        study_uid=_text(ds, "StudyInstanceUID", 64), series_uid=_text(ds, "SeriesInstanceUID", 64),
        patient_id=_text(ds, "PatientID", 200), study_date=_text(ds, "StudyDate", 8),
        series_description=_text(ds, "SeriesDescription", 200), is_image=is_image,
        patient_age=parse_age(ds.get("PatientAge")), patient_sex=parse_sex(ds.get("PatientSex")),
    )
