"""A strict, bounded scanner for the few header values the upload gate needs.

pydicom builds a whole ``Dataset`` for each file, about 0.7-1 ms of pure Python per CT slice
header on the 2-core reference machine: the largest cost of accepting an upload. The gate needs
fifteen values and where the pixel data starts. This scanner walks the elements of the common
encodings (explicit or implicit VR little endian, native or encapsulated pixel data, nested
sequences of defined or undefined length) and reads only those values.

It is a fast path, not a second parser to trust: anything it does not fully understand (another
transfer syntax, no preamble, elements out of order, multi-valued or non-ASCII values of the
wanted tags, a malformed or cut element, nesting deeper than ``MAX_DEPTH``) returns None, and
the caller reads the file with pydicom as before. Tests compare both on real studies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

from pydicom.uid import UID

WANTED = {
    0x00080016: "SOPClassUID", 0x00080018: "SOPInstanceUID", 0x00080020: "StudyDate",
    0x00080060: "Modality", 0x0008103E: "SeriesDescription", 0x00100020: "PatientID",
    0x00100040: "PatientSex", 0x00101010: "PatientAge", 0x0020000D: "StudyInstanceUID",
    0x0020000E: "SeriesInstanceUID", 0x00280002: "SamplesPerPixel",
    0x00280004: "PhotometricInterpretation", 0x00280008: "NumberOfFrames", 0x00280010: "Rows",
    0x00280011: "Columns", 0x00280100: "BitsAllocated",
}
EXPECTED_VR = {
    0x00080016: b"UI", 0x00080018: b"UI", 0x00080020: b"DA", 0x00080060: b"CS",
    0x0008103E: b"LO", 0x00100020: b"LO", 0x00100040: b"CS", 0x00101010: b"AS",
    0x0020000D: b"UI", 0x0020000E: b"UI", 0x00280002: b"US", 0x00280004: b"CS",
    0x00280008: b"IS", 0x00280010: b"US",
    0x00280011: b"US", 0x00280100: b"US",
}
# where pydicom's stop_before_pixels stops
PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN",
                      b"UR", b"UT", b"UV"})
SHORT_VRS = frozenset({b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS",
                       b"LO", b"LT", b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL",
                       b"US"})
UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
MAX_DEPTH = 8
FIRST_READ = 16 * 1024
MAX_HEADER_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ScannedHeader:
    transfer_syntax: UID
    media_sop_class: str
    values: dict[str, str | int]  # keyword -> value, only for the wanted tags present
    pixel_position: int  # offset of the pixel data element; the file size when there is none


class _Unsupported(Exception):
    """Not for the fast path: pydicom reads the file."""


class _NeedMore(Exception):
    """The element runs past the bytes read so far."""


def scan_header(stream: BinaryIO, size: int) -> ScannedHeader | None:
    """Scan a DICOM file with a preamble (``stream`` at offset 0, ``size`` bytes long)."""
    buffer = stream.read(min(FIRST_READ, size))
    while True:
        try:
            return _Scanner(buffer, size).run()
        except _Unsupported:
            return None
        except _NeedMore:
            if len(buffer) >= min(size, MAX_HEADER_BYTES):
                return None
            more = stream.read(min(len(buffer), size - len(buffer)))
            if not more:
                return None
            buffer += more


def _u16(buf: bytes, pos: int) -> int:
    return buf[pos] | buf[pos + 1] << 8


def _u32(buf: bytes, pos: int) -> int:
    return int.from_bytes(buf[pos:pos + 4], "little")


class _Scanner:
    def __init__(self, buf: bytes, size: int) -> None:
        self.buf = buf
        self.whole = len(buf) >= size
        self.values: dict[str, str | int] = {}

    def _need(self, end: int) -> None:
        if end > len(self.buf):
            raise _Unsupported if self.whole else _NeedMore

    def _tag(self, pos: int) -> int:
        self._need(pos + 8)
        return _u16(self.buf, pos) << 16 | _u16(self.buf, pos + 2)

    def _header(self, pos: int, implicit: bool) -> tuple[bytes | None, int, int]:
        """(VR or None, value length, header length) of the element at ``pos``."""
        if implicit:
            return None, _u32(self.buf, pos + 4), 8
        vr = self.buf[pos + 4:pos + 6]
        if vr in LONG_VRS:
            self._need(pos + 12)
            return vr, _u32(self.buf, pos + 8), 12
        if vr in SHORT_VRS:
            return vr, _u16(self.buf, pos + 6), 8
        raise _Unsupported

    def run(self) -> ScannedHeader:
        if self.buf[128:132] != b"DICM":
            raise _Unsupported
        pos, meta = self._meta(132)
        syntax = UID(meta.get(0x00020010, ""))
        if not syntax.is_transfer_syntax or syntax.is_deflated or not syntax.is_little_endian:
            raise _Unsupported
        implicit = syntax.is_implicit_VR
        self._check_encoding(pos, implicit)
        last = -1
        while pos < len(self.buf) or not self.whole:
            tag = self._tag(pos)
            if tag in PIXEL_TAGS:
                return ScannedHeader(syntax, meta.get(0x00020002, ""), self.values, pos)
            if tag <= last or tag >> 16 == 0xFFFE:
                raise _Unsupported
            last = tag
            pos = self._element(pos, tag, implicit, depth=0)
        return ScannedHeader(syntax, meta.get(0x00020002, ""), self.values, len(self.buf))

    def _meta(self, pos: int) -> tuple[int, dict[int, str]]:
        meta: dict[int, str] = {}
        while True:
            tag = self._tag(pos)
            if tag >> 16 != 0x0002:
                return pos, meta
            vr, length, header = self._header(pos, implicit=False)
            end = pos + header + length
            if length == UNDEFINED or vr is None:
                raise _Unsupported
            self._need(end)
            if tag in (0x00020002, 0x00020010):
                meta[tag] = self._text(pos + header, end)
            pos = end

    def _check_encoding(self, pos: int, implicit: bool) -> None:
        """The first element must look like the transfer syntax says (pydicom would guess)."""
        if pos + 8 > len(self.buf):
            return
        looks_explicit = self.buf[pos + 4:pos + 6] in LONG_VRS | SHORT_VRS
        if looks_explicit == implicit:
            raise _Unsupported

    def _element(self, pos: int, tag: int, implicit: bool, depth: int) -> int:
        vr, length, header = self._header(pos, implicit)
        start = pos + header
        if length == UNDEFINED:
            if not implicit and vr not in (b"SQ", b"UN"):
                raise _Unsupported
            return self._sequence(start, implicit or vr == b"UN", depth + 1)
        end = start + length
        self._need(end)
        keyword = WANTED.get(tag) if depth == 0 else None
        if keyword is not None:
            expected = EXPECTED_VR[tag]
            if vr is not None and vr != expected:
                raise _Unsupported
            if expected == b"US":
                if length != 2:
                    raise _Unsupported
                self.values[keyword] = _u16(self.buf, start)
            else:
                self.values[keyword] = self._text(start, end)
        return end

    def _sequence(self, pos: int, implicit: bool, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise _Unsupported
        while True:
            tag = self._tag(pos)
            length = _u32(self.buf, pos + 4)
            if tag == SEQUENCE_END:
                return pos + 8
            if tag != ITEM:
                raise _Unsupported
            if length != UNDEFINED:
                pos += 8 + length
                self._need(pos)
                continue
            pos += 8
            while (tag := self._tag(pos)) != ITEM_END:
                if tag >> 16 == 0xFFFE:
                    raise _Unsupported
                pos = self._element(pos, tag, implicit, depth)
            pos += 8

    def _text(self, start: int, end: int) -> str:
        raw = self.buf[start:end].rstrip(b" \x00")
        if raw[:1] == b" " or b"\\" in raw or any(c < 0x20 or c > 0x7E for c in raw):
            raise _Unsupported  # multi-valued, padded at the front or not plain ASCII
        return raw.decode("ascii")
