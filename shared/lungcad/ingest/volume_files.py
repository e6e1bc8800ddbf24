"""Header checks for single-file volume formats: NIfTI, MetaImage and NRRD.

Each check reads only the header (and, for gzip, streams the body to count it), and raises
InvalidInput with a specific code when the file cannot be a complete 3D volume.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

from lungcad.errors import InvalidInput

NIFTI_BITPIX = {2: 8, 4: 16, 8: 32, 16: 32, 64: 64, 256: 8, 512: 16, 768: 32, 1024: 64, 1280: 64}
META_TYPES = {"MET_UCHAR": 1, "MET_CHAR": 1, "MET_USHORT": 2, "MET_SHORT": 2, "MET_UINT": 4,
              "MET_INT": 4, "MET_FLOAT": 4, "MET_DOUBLE": 8, "MET_LONG": 8, "MET_ULONG": 8}
NRRD_TYPES = {"uchar": 1, "unsigned char": 1, "uint8": 1, "signed char": 1, "int8": 1,
              "char": 1, "short": 2, "int16": 2, "ushort": 2, "unsigned short": 2, "uint16": 2,
              "int": 4, "int32": 4, "uint": 4, "unsigned int": 4, "uint32": 4, "float": 4,
              "double": 8, "int64": 8, "uint64": 8, "long long": 8}
MAX_VOXELS = 2048**3


def _truncated(name: str, have: int, need: int) -> InvalidInput:
    return InvalidInput(f"{name}: the image data is truncated ({have} bytes, needs {need}).",
                        code="truncated_file")


def _check_dims(name: str, dims: list[int]) -> int:
    if len(dims) < 3 or any(d < 1 for d in dims[:3]) or sum(d > 1 for d in dims[:3]) < 3:
        raise InvalidInput(f"{name}: a 3D volume is needed; the dimensions are {dims}.",
                           code="not_a_volume")
    voxels = 1
    for d in dims:
        voxels *= d
    if voxels > MAX_VOXELS:
        raise InvalidInput(f"{name}: {dims} voxels is beyond any CT.", code="dimensions_too_large")
    return voxels


def gunzip_size(path: Path, limit: int) -> int:
    """Decompressed size of a gzip file, stopping at ``limit`` (a gzip bomb)."""
    total = 0
    try:
        with gzip.open(path, "rb") as handle:
            while chunk := handle.read(4 * 1024 * 1024):
                total += len(chunk)
                if total > limit:
                    raise InvalidInput(f"{path.name}: expands beyond {limit} bytes.",
                                       code="zip_bomb")
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise InvalidInput(f"{path.name}: the gzip stream is truncated or corrupt ({exc}).",
                           code="truncated_file") from exc
    return total


def nifti_header(head: bytes) -> tuple[str, list[int], int, int] | None:
    """Parse a NIfTI-1/2 header: (endianness, dims, bits per voxel, data offset) or None."""
    for endian in "<>":
        if len(head) >= 348 and struct.unpack(endian + "i", head[:4])[0] == 348 \
                and head[344:347] in (b"n+1", b"ni1"):
            dim = struct.unpack(endian + "8h", head[40:56])
            datatype = struct.unpack(endian + "h", head[70:72])[0]
            offset = int(struct.unpack(endian + "f", head[108:112])[0])
            return endian, list(dim[1:1 + max(0, min(dim[0], 7))]), \
                NIFTI_BITPIX.get(datatype, 0), max(offset, 352)
        if len(head) >= 540 and struct.unpack(endian + "i", head[:4])[0] == 540 \
                and head[4:7] in (b"n+2", b"ni2"):
            datatype = struct.unpack(endian + "h", head[12:14])[0]
            dim = struct.unpack(endian + "8q", head[16:80])
            offset = struct.unpack(endian + "q", head[168:176])[0]
            return endian, list(dim[1:1 + max(0, min(dim[0], 7))]), \
                NIFTI_BITPIX.get(datatype, 0), max(int(offset), 544)
    return None


def check_nifti(path: Path, gz: bool, expand_limit: int) -> None:
    opener = gzip.open if gz else open
    try:
        with opener(path, "rb") as handle:
            head = handle.read(544)
    except (EOFError, OSError, zlib.error) as exc:
        raise InvalidInput(f"{path.name}: not a readable NIfTI file ({exc}).",
                           code="truncated_file") from exc
    parsed = nifti_header(head)
    if parsed is None:
        raise InvalidInput(f"{path.name}: the NIfTI header is missing or corrupt.",
                           code="not_medical_image")
    _, dims, bits, offset = parsed
    if bits == 0:
        raise InvalidInput(f"{path.name}: unsupported NIfTI data type.", code="unsupported_format")
    need = offset + _check_dims(path.name, dims) * bits // 8
    have = gunzip_size(path, expand_limit) if gz else path.stat().st_size
    if have < need:
        raise _truncated(path.name, have, need)


def parse_key_values(text: str, sep: str) -> dict[str, str]:
    fields = {}
    for line in text.splitlines():
        if sep in line and not line.startswith("#"):
            key, value = line.split(sep, 1)
            fields[key.strip().lower()] = value.strip()
    return fields


def metaimage_header(path: Path) -> tuple[dict[str, str], int]:
    """Read an .mhd/.mha header: (fields, byte offset of the data for LOCAL files)."""
    with open(path, "rb") as handle:
        raw = handle.read(64 * 1024)
    lines, offset = [], 0
    for line in raw.split(b"\n"):
        offset += len(line) + 1
        text = line.decode("latin-1").strip()
        lines.append(text)
        if text.lower().startswith("elementdatafile"):
            break
    else:
        raise InvalidInput(f"{path.name}: no ElementDataFile line; not a MetaImage header.",
                           code="not_medical_image")
    fields = parse_key_values("\n".join(lines), "=")
    if "dimsize" not in fields or "elementtype" not in fields:
        raise InvalidInput(f"{path.name}: DimSize or ElementType missing.",
                           code="not_medical_image")
    return fields, offset


def metaimage_data_bytes(path: Path, fields: dict[str, str]) -> int | None:
    """Bytes of voxel data the header promises (None when compressed)."""
    try:
        dims = [int(v) for v in fields["dimsize"].split()]
    except ValueError as exc:
        raise InvalidInput(f"{path.name}: DimSize is not a list of integers.",
                           code="not_medical_image") from exc
    voxels = _check_dims(path.name, dims)
    if fields.get("compresseddata", "false").lower() == "true":
        return None
    size = META_TYPES.get(fields["elementtype"].upper())
    if size is None:
        raise InvalidInput(f"{path.name}: unsupported ElementType {fields['elementtype']}.",
                           code="unsupported_format")
    channels = int(fields.get("elementnumberofchannels", "1") or 1)
    return voxels * size * channels


def check_mha(path: Path) -> None:
    fields, offset = metaimage_header(path)
    if fields["elementdatafile"].upper() != "LOCAL":
        raise InvalidInput(f"{path.name}: an .mha must hold its data (ElementDataFile = LOCAL).",
                           code="metaimage_missing_data")
    need = metaimage_data_bytes(path, fields)
    have = path.stat().st_size - offset
    if need is not None and have < need:
        raise _truncated(path.name, have, need)


def check_nrrd(path: Path, expand_limit: int) -> None:
    with open(path, "rb") as handle:
        raw = handle.read(64 * 1024)
    if not raw.startswith(b"NRRD000"):
        raise InvalidInput(f"{path.name}: not an NRRD file.", code="not_medical_image")
    end = raw.find(b"\n\n")
    if end < 0:
        raise InvalidInput(f"{path.name}: the NRRD header does not end.", code="truncated_file")
    fields = parse_key_values(raw[:end].decode("latin-1"), ":")
    if "data file" in fields or "datafile" in fields:
        raise InvalidInput(f"{path.name}: detached NRRD data files are not supported; upload an "
                           "attached .nrrd.", code="unsupported_format")
    try:
        dims = [int(v) for v in fields.get("sizes", "").split()]
    except ValueError as exc:
        raise InvalidInput(f"{path.name}: invalid sizes field.", code="not_medical_image") from exc
    voxels = _check_dims(path.name, dims)
    size = NRRD_TYPES.get(fields.get("type", "").lower())
    if size is None:
        raise InvalidInput(f"{path.name}: unsupported NRRD type.", code="unsupported_format")
    encoding = fields.get("encoding", "raw").lower()
    if encoding == "raw":
        have = path.stat().st_size - (end + 2)
        if have < voxels * size:
            raise _truncated(path.name, have, voxels * size)
    elif encoding not in ("gzip", "gz", "ascii", "text", "txt", "bzip2", "bz2"):
        raise InvalidInput(f"{path.name}: unsupported NRRD encoding {encoding}.",
                           code="unsupported_format")
