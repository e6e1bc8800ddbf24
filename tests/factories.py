"""Small, valid DICOM and volume files made on the fly for the API tests (no real data)."""

from __future__ import annotations

import gzip
import io
import random
import struct
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, generate_uid

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7"


def ct_slice(path: Path, index: int, study_uid: str, series_uid: str, rows: int = 32,
             cols: int = 32, modality: str = "CT", sop_class: str = CT_STORAGE,
             patient_name: str = "TEST^PATIENT", patient_id: str = "P001") -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.Modality = modality
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.StudyDate = "20240102"
    ds.SeriesDescription = "CHEST 1.0 B45f"
    ds.InstanceNumber = index + 1
    ds.ImagePositionPatient = [-16.0, -16.0, float(index)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [1.0, 1.0]
    ds.SliceThickness = 1.0
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.PixelData = (np.full((rows, cols), 24, dtype=np.int16) + index).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def ct_series(folder: Path, n: int = 4, study_uid: str | None = None,
              **kwargs: object) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    series_uid = generate_uid()
    return [ct_slice(folder / f"slice {i:03d}.dcm", i, study_uid, series_uid, **kwargs)  # type: ignore[arg-type]
            for i in range(n)]


def nifti_header(shape: tuple[int, int, int]) -> bytes:
    """A NIfTI-1 single-file header (352 bytes) for int16 voxels of ``shape``."""
    header = bytearray(352)
    struct.pack_into("<i", header, 0, 348)
    struct.pack_into("<8h", header, 40, 3, *shape, 1, 1, 1, 1)
    struct.pack_into("<hh", header, 70, 4, 16)  # int16
    struct.pack_into("<8f", header, 76, 1, 1, 1, 1, 1, 1, 1, 1)
    struct.pack_into("<f", header, 108, 352.0)
    header[344:348] = b"n+1\0"
    return bytes(header)


def nifti(path: Path, shape: tuple[int, int, int] = (16, 16, 8), gz: bool = False,
          truncate: int = 0) -> Path:
    data = nifti_header(shape) + np.zeros(shape[::-1], dtype=np.int16).tobytes()
    if truncate:
        data = data[:-truncate]
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def metaimage(folder: Path, shape: tuple[int, int, int] = (16, 16, 8),
              raw_name: str = "vol.raw") -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    mhd = folder / "vol.mhd"
    mhd.write_text("ObjectType = Image\nNDims = 3\nDimSize = "
                   f"{shape[0]} {shape[1]} {shape[2]}\nElementType = MET_SHORT\n"
                   "ElementSpacing = 1 1 1\nElementDataFile = vol.raw\n")
    raw = folder / raw_name
    raw.write_bytes(np.zeros(shape[::-1], dtype=np.int16).tobytes())
    return mhd, raw


def read(path: Path) -> pydicom.Dataset:
    return pydicom.dcmread(path)


def _deep_sequence(data: bytes, depth: int) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    inner = Dataset()
    inner.CodeMeaning = "deep"
    for _ in range(depth):
        outer = Dataset()
        outer.ReferencedImageSequence = Sequence([inner])
        inner = outer
    ds.ReferencedImageSequence = inner.ReferencedImageSequence
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


def _dimensions(data: bytes, rows: int, cols: int) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.Rows, ds.Columns = rows, cols
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One hostile variant of a valid DICOM file."""
    kind = rng.choice(["flip", "truncate", "length", "dimensions", "nesting", "flip"])
    buf = bytearray(data)
    if kind == "flip":
        for _ in range(rng.randint(1, 12)):
            buf[rng.randrange(132, min(len(buf), 900))] = rng.randrange(256)
    elif kind == "truncate":
        buf = buf[:rng.randrange(132, len(buf))]
    elif kind == "length":
        at = rng.randrange(136, min(len(buf) - 4, 900))
        buf[at:at + 4] = struct.pack("<I", rng.choice([0xFFFFFFF0, 0x7FFFFFFF, 0xFFFF]))
    elif kind == "dimensions":
        return kind, _dimensions(data, rng.choice([0, 1, 65535]), rng.choice([0, 65535, 3]))
    else:
        return kind, _deep_sequence(data, rng.choice([50, 150]))
    return kind, bytes(buf)


def deflated(data: bytes, pixel_bytes: int | None = None) -> bytes:
    """``data`` (a DICOM file) re-encoded as Deflated Explicit VR Little Endian, as pydicom writes
    it; ``pixel_bytes`` keeps only that many bytes of its pixel data (a cut image inside an
    intact deflate stream)."""
    ds = pydicom.dcmread(io.BytesIO(data))
    if pixel_bytes is not None:
        ds.PixelData = ds.PixelData[:pixel_bytes]
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def instance_number_at(folder: Path, point_lps: object) -> tuple[int, str]:
    """The InstanceNumber and SOPInstanceUID of the slice nearest to an LPS point, read
    straight from the DICOM headers in ``folder`` (not through the product's slice table)."""
    point = np.asarray(point_lps, float)
    best: tuple[float, int, str] | None = None
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (pydicom.errors.InvalidDicomError, OSError):
            continue
        if "ImagePositionPatient" not in ds or "InstanceNumber" not in ds:
            continue
        iop = np.asarray(ds.ImageOrientationPatient, float)
        normal = np.cross(iop[:3], iop[3:])
        distance = abs(float((point - np.asarray(ds.ImagePositionPatient, float)) @ normal))
        if best is None or distance < best[0]:
            best = (distance, int(ds.InstanceNumber), str(ds.SOPInstanceUID))
    if best is None:
        raise ValueError(f"no DICOM slice in {folder}")
    return best[1], best[2]
