"""Deflated Explicit VR Little Endian (1.2.840.10008.1.2.1.99): inflate it, within a limit.

After the file meta, the whole data set of such a file is one raw deflate stream, so the pixel
data's offset and length mean nothing in the file's own bytes. ``inflated_equivalent`` turns
the file into the plain Explicit VR Little Endian file it stands for (same preamble and file
meta, the transfer syntax rewritten, the data set inflated), so the header checks read it like
any other. pydicom inflates with one unbounded ``zlib.decompress``; this inflates in chunks and
stops at ``limit`` bytes, so a deflate bomb costs neither memory nor disk beyond the limit.
"""

from __future__ import annotations

import tempfile
import zlib
from collections.abc import Iterator
from typing import BinaryIO

from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from lungcad.errors import InvalidInput

META_READ = 64 * 1024  # the file meta is a few hundred bytes; more is not a DICOM file meta
CHUNK = 1024 * 1024
IN_MEMORY = 16 * 1024 * 1024  # inflated files larger than this spill to a temporary file


def _file_meta(head: bytes) -> tuple[FileMetaDataset, int]:
    """The file meta of ``head`` (a file with a preamble) and the offset where it ends."""
    fp = DicomBytesIO(head[132:])
    fp.is_little_endian, fp.is_implicit_VR = True, False
    meta = read_dataset(fp, False, True, stop_when=lambda tag, vr, length: tag.group != 2)
    return FileMetaDataset(meta), 132 + fp.tell()


DEFLATED_UID = DeflatedExplicitVRLittleEndian.encode()


def is_deflated(head: bytes) -> bool:
    """Whether the file meta in ``head`` (a file with a preamble) names the deflated syntax."""
    if DEFLATED_UID not in head:
        return False  # the cheap test first: most files never reach pydicom here
    try:
        return _file_meta(head)[0].get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian
    except Exception:  # noqa: BLE001 - a corrupt meta is the header reader's to report
        return False


def _inflate(stream: BinaryIO, inflater: zlib._Decompress) -> Iterator[bytes]:
    """The inflated bytes, at most CHUNK at a time, until the deflate stream or the input ends."""
    while not inflater.eof:
        chunk = inflater.unconsumed_tail or stream.read(CHUNK)
        data = inflater.decompress(chunk, CHUNK)
        if not chunk and not data:
            return
        yield data


def inflated_equivalent(stream: BinaryIO, size: int, name: str,
                        limit: int) -> tuple[BinaryIO, int]:
    """The Explicit VR Little Endian file that the deflated file in ``stream`` encodes, and its
    size. Raises InvalidInput: zip_bomb past ``limit`` bytes, truncated_file when the deflate
    stream ends early, invalid_dicom when it is corrupt."""
    stream.seek(0)
    head = stream.read(min(size, META_READ))
    meta, meta_end = _file_meta(head)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if "FileMetaInformationGroupLength" in meta:
        del meta.FileMetaInformationGroupLength  # stale now; readers do without it
    out: BinaryIO = tempfile.SpooledTemporaryFile(max_size=IN_MEMORY)  # type: ignore[assignment]
    out.write(head[:132])
    meta_out = DicomBytesIO()
    write_file_meta_info(meta_out, meta, enforce_standard=False)
    out.write(meta_out.getvalue())
    total = out.tell()
    stream.seek(meta_end)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        for data in _inflate(stream, inflater):
            total += len(data)
            if total > limit:
                raise InvalidInput(f"{name}: the deflated data set expands beyond {limit} "
                                   "bytes (the zip expansion limit).", code="zip_bomb")
            out.write(data)
    except zlib.error as exc:
        raise InvalidInput(f"{name}: the deflated data set is corrupt (it cannot be inflated).",
                           code="invalid_dicom") from exc
    if not inflater.eof:
        raise InvalidInput(f"{name}: the deflated data set ends before its deflate stream "
                           "does; the file is truncated.", code="truncated_file")
    out.seek(0)
    return out, total
