"""Read a DICOM header without its pixels and check that the pixel data is all there."""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import BinaryIO

import pydicom
from pydicom.errors import InvalidDicomError

from lungcad.errors import InvalidInput
from lungcad.ingest.deflated import inflated_equivalent, is_deflated
from lungcad.ingest.dicom_scan import WANTED, scan_header

log = logging.getLogger(__name__)

CT_SOP_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image Storage
    "1.2.840.10008.5.1.4.1.1.2.2",  # Legacy Converted Enhanced CT Image Storage
})
# Objects that travel with a CT study but are not images to analyse.
NON_IMAGE_MODALITIES = frozenset({"SEG", "SR", "RTSTRUCT", "PR", "KO", "REG", "RTPLAN", "DOC"})
MAX_PIXELS_PER_FRAME = 4096 * 4096
# A deflated file is inflated to check it; past this many bytes it is refused as a bomb.
DEFAULT_INFLATE_LIMIT = 8 * 1024**3
KEYWORDS = tuple(WANTED.values())


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
    sop_instance_uid: str | None = None

    @property
    def is_ct_image(self) -> bool:
        return self.is_image and self.sop_class_uid in CT_SOP_CLASSES

    @property
    def is_companion(self) -> bool:
        """A non-image object (SEG, SR, dose report...) that may travel with a CT study."""
        return not self.is_image


def _text(values: Mapping[str, object], keyword: str, limit: int) -> str | None:
    value = values.get(keyword)
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


def _native_pixel_bytes(values: Mapping[str, object], compressed: bool) -> int | None:
    """Bytes the uncompressed pixel data must hold, or None when compressed/unknown.

    YBR_FULL_422 stores two luminance samples per chroma pair (4:2:2): two thirds of the
    bytes three full samples would take. One-bit pixels are packed eight to a byte.
    """
    if compressed:
        return None
    try:
        rows, cols = int(values["Rows"]), int(values["Columns"])  # type: ignore[call-overload]
        bits = int(values["BitsAllocated"])  # type: ignore[call-overload]
        samples = int(values.get("SamplesPerPixel", 1) or 1)  # type: ignore[call-overload]
        frames = int(values.get("NumberOfFrames", 1) or 1)  # type: ignore[call-overload]
    except (KeyError, AttributeError, TypeError, ValueError):
        return None
    if bits == 1:
        return (rows * cols * samples * frames + 7) // 8
    expected = rows * cols * samples * frames * max(bits, 8) // 8
    if str(values.get("PhotometricInterpretation", "")).strip() == "YBR_FULL_422":
        expected = expected // 3 * 2
    return expected


# The 128-byte preamble is free for applications; an executable header there makes the file
# runnable as a program (PE "MZ", ELF, Mach-O, a script). Only these are refused: TIFF headers and
# zeros are legitimate preambles.
EXECUTABLE_MAGIC = (b"MZ", b"\x7fELF", b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf",
                    b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe", b"#!")


def read_summary(stream: BinaryIO, size: int, name: str,
                 inflate_limit: int = DEFAULT_INFLATE_LIMIT) -> DicomSummary | None:
    """Return the summary of a DICOM file, or None when the bytes are not DICOM at all.

    Raises InvalidInput(truncated_file) when a DICOM file stops before its pixel data ends,
    InvalidInput(no_pixel_data) for an image header without pixel data,
    InvalidInput(dimensions_too_large) for absurd frame sizes, and InvalidInput(invalid_dicom)
    when pydicom fails on a corrupt element (elements are decoded lazily, on first access, so a
    hostile value can raise anything from NotImplementedError to RecursionError there). A
    deflated file is inflated first, up to ``inflate_limit`` bytes (zip_bomb beyond).
    """
    try:
        return _read_summary(stream, size, name, inflate_limit)
    except InvalidInput:
        raise
    except Exception as exc:  # noqa: BLE001 - hostile input must become a 422, never a 500
        raise _corrupt_header(name, exc) from exc


def _corrupt_header(name: str, exc: BaseException) -> InvalidInput:
    """The refusal for a header pydicom cannot decode: a sentence about the file, not Python's
    exception text (logged instead)."""
    log.info("corrupt DICOM header in %s: %s: %s", name, type(exc).__name__, str(exc)[:200])
    if isinstance(exc, RecursionError):
        return InvalidInput(f"{name}: the DICOM header nests sequences too deeply to be read "
                            "(a corrupt or hostile file).", code="invalid_dicom")
    return InvalidInput(f"{name}: the DICOM header is corrupt (an element cannot be decoded).",
                        code="invalid_dicom")


class _DatasetValues(Mapping[str, object]):
    """The wanted values of a pydicom Dataset, converted on first access as pydicom does (a
    corrupt element raises only when it is read)."""

    def __init__(self, ds: pydicom.Dataset) -> None:
        self._ds = ds

    def __getitem__(self, keyword: str) -> object:
        if keyword not in self._ds:
            raise KeyError(keyword)
        return self._ds.get(keyword)

    def __iter__(self) -> Iterator[str]:
        return (keyword for keyword in KEYWORDS if keyword in self._ds)

    def __len__(self) -> int:
        return sum(1 for _ in self)


@dataclass(frozen=True)
class _Header:
    values: Mapping[str, object]  # the KEYWORDS present, as pydicom gives them
    media_sop_class: str
    compressed: bool  # the transfer syntax compresses the pixel data
    pixel_position: int  # where the pixel data element starts (the file size if none)
    implicit_vr: bool = False  # the pixel data element's header is 8 bytes, else 12


# The first group of a DICOM file, after its preamble or without one (old writers): the file
# meta (0002) or the identifying group (0008), read little- or big-endian. Anything else is not
# DICOM. pydicom's reader would walk it element by element, at about a second per MB of
# element-like bytes: 60 MB of zeros in a 58 KB zip took 58 s of gateway CPU.
_FIRST_GROUPS = (0x0002, 0x0008, 0x0200, 0x0800)


def _first_group(data: bytes) -> int | None:
    return int.from_bytes(data[:2], "little") if len(data) >= 8 else None


def _read_summary(stream: BinaryIO, size: int, name: str,
                  inflate_limit: int) -> DicomSummary | None:
    head = stream.read(140)
    stream.seek(0)
    has_preamble = len(head) >= 132 and head[128:132] == b"DICM"
    if has_preamble and head.startswith(EXECUTABLE_MAGIC):
        raise InvalidInput(f"{name}: the DICOM preamble holds an executable header (a DICOM/"
                           "executable polyglot, CVE-2019-11687); such files are refused.",
                           code="executable_preamble")
    if _first_group(head[132:] if has_preamble else head) not in _FIRST_GROUPS:
        if has_preamble:
            raise InvalidInput(f"{name}: the DICOM header is corrupt (no DICOM element after "
                               "the preamble).", code="invalid_dicom")
        return None
    if has_preamble and is_deflated(stream.read(2048)):
        inflated, size = inflated_equivalent(stream, size, name, inflate_limit)
        with inflated:
            return _header_summary(inflated, size, name, has_preamble)
    stream.seek(0)
    return _header_summary(stream, size, name, has_preamble)


def _header_summary(stream: BinaryIO, size: int, name: str,
                    has_preamble: bool) -> DicomSummary | None:
    header = _scanned(stream, size) if has_preamble else None
    if header is None:
        stream.seek(0)
        header = _read_with_pydicom(stream, has_preamble, name)
        if header is None:
            return None
    return _summarize(header, size, name, has_preamble)


def _scanned(stream: BinaryIO, size: int) -> _Header | None:
    scanned = scan_header(stream, size)
    if scanned is None:
        return None
    syntax = scanned.transfer_syntax
    return _Header(scanned.values, scanned.media_sop_class, syntax.is_compressed,
                   scanned.pixel_position, syntax.is_implicit_VR)


def _read_with_pydicom(stream: BinaryIO, has_preamble: bool, name: str) -> _Header | None:
    try:
        ds = pydicom.dcmread(stream, stop_before_pixels=True, force=not has_preamble)
        position = stream.tell()
    except InvalidDicomError:
        return None
    except RecursionError as exc:
        raise _corrupt_header(name, exc) from exc
    except (EOFError, OSError, ValueError, KeyError, TypeError, AttributeError, IndexError,
            OverflowError, NotImplementedError, struct.error) as exc:
        if has_preamble:
            log.info("unreadable DICOM header in %s: %s", name, str(exc)[:200])
            raise InvalidInput(f"{name}: the DICOM header ends in the middle of an element or "
                               "is corrupt.", code="truncated_file") from exc
        return None
    meta = getattr(ds, "file_meta", None)
    syntax = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    return _Header(_DatasetValues(ds), str(getattr(meta, "MediaStorageSOPClassUID", "") or ""),
                   bool(syntax is not None and getattr(syntax, "is_compressed", False)), position,
                   bool(ds.original_encoding[0] is not False))


def _summarize(header: _Header, size: int, name: str, has_preamble: bool) -> DicomSummary | None:
    values = header.values
    sop_class = str(values.get("SOPClassUID", "") or header.media_sop_class or "")
    if not sop_class and not has_preamble:
        return None  # forced parse of arbitrary bytes: not DICOM
    modality = str(values.get("Modality", "") or "").upper()
    is_image = "Rows" in values and "Columns" in values and modality not in NON_IMAGE_MODALITIES
    if not is_image and sop_class in CT_SOP_CLASSES:
        if "SOPClassUID" not in values:
            raise InvalidInput(f"{name}: the CT file ends before its data set (only the file "
                               "meta is there).", code="truncated_file")
        raise InvalidInput(f"{name}: the CT image file holds no image (no Rows, Columns or "
                           "pixel data).", code="no_pixel_data")
    if is_image:
        try:
            frame = int(values["Rows"]) * int(values["Columns"])  # type: ignore[call-overload]
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"{name}: Rows/Columns are not numbers.",
                               code="invalid_dicom") from exc
        if frame > MAX_PIXELS_PER_FRAME:
            raise InvalidInput(f"{name}: {values['Rows']} x {values['Columns']} pixels per frame "
                               "is beyond any CT reconstruction.", code="dimensions_too_large")
        _check_pixel_bytes(header, size, name)
    return DicomSummary(
        sop_class_uid=sop_class, modality=modality,
        study_uid=_text(values, "StudyInstanceUID", 64),
        series_uid=_text(values, "SeriesInstanceUID", 64),
        patient_id=_text(values, "PatientID", 200), study_date=_text(values, "StudyDate", 8),
        series_description=_text(values, "SeriesDescription", 200), is_image=is_image,
        patient_age=parse_age(values.get("PatientAge")),
        patient_sex=parse_sex(values.get("PatientSex")),
        sop_instance_uid=_text(values, "SOPInstanceUID", 64),
    )


def _check_pixel_bytes(header: _Header, size: int, name: str) -> None:
    if header.pixel_position >= size:
        raise InvalidInput(f"{name}: the image header (Rows {header.values['Rows']}, Columns "
                           f"{header.values['Columns']}) is followed by no pixel data element.",
                           code="no_pixel_data")
    remaining = size - header.pixel_position - (8 if header.implicit_vr else 12)
    expected = _native_pixel_bytes(header.values, header.compressed)
    if remaining <= 0:
        raise InvalidInput(f"{name}: the file ends inside its pixel data element's header.",
                           code="truncated_file")
    if expected is not None and remaining < expected:
        raise InvalidInput(f"{name}: the file ends before its pixel data does (has {remaining} "
                           f"bytes of pixel data, needs {expected}).", code="truncated_file")
