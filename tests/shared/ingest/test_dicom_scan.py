"""The header scanner is a fast path: wherever it answers, the answer is pydicom's."""

from __future__ import annotations

import io
import random
import zipfile
from pathlib import Path

import numpy as np
import pytest

from lungcad.errors import InvalidInput
from lungcad.imaging import Geometry
from lungcad.ingest import dicom_header
from lungcad.ingest.dicom_scan import scan_header
from lungcad.synthetic import write_dicom_series
from tests.conftest import STUDIES
from tests.factories import mutate

EXPLICIT, IMPLICIT, RLE = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.5"


def outcome(data: bytes, pydicom_only: bool = False) -> object:
    """read_summary's answer for ``data``: a summary, None, or the code it raises."""
    original = dicom_header.scan_header
    if pydicom_only:
        dicom_header.scan_header = lambda stream, size: None  # type: ignore[assignment]
    try:
        return dicom_header.read_summary(io.BytesIO(data), len(data), "f.dcm")
    except InvalidInput as exc:
        return exc.code
    finally:
        dicom_header.scan_header = original


def slices(tmp_path: Path, syntax: str, n: int = 3) -> list[bytes]:
    hu = np.random.default_rng(0).integers(-1000, 400, (n, 24, 24)).astype(np.int16)
    paths = write_dicom_series(hu, Geometry(hu.shape, (1.0, 0.7, 0.7), (0.0, 0.0, 0.0)),
                               tmp_path / syntax, transfer_syntax=syntax)
    return [p.read_bytes() for p in paths]


@pytest.mark.parametrize("syntax", [EXPLICIT, IMPLICIT, RLE])
def test_scanned_headers_equal_pydicom(tmp_path: Path, syntax: str) -> None:
    for data in slices(tmp_path, syntax):
        assert scan_header(io.BytesIO(data), len(data)) is not None
        summary = outcome(data)
        assert summary == outcome(data, pydicom_only=True)
        assert summary.is_ct_image and summary.patient_id == "SYN0001"  # type: ignore[union-attr]


def test_real_studies_take_the_fast_path_with_pydicom_answers(shared_data: Path) -> None:
    scanned = total = 0
    for name in STUDIES:
        with zipfile.ZipFile(shared_data / "ct" / f"{name}.zip") as zf:
            for info in zf.infolist():
                data = zf.read(info)
                if info.is_dir() or data[128:132] != b"DICM":
                    continue
                total += 1
                scanned += scan_header(io.BytesIO(data), len(data)) is not None
                assert outcome(data) == outcome(data, pydicom_only=True), info.filename
    assert total > 400
    assert scanned == total  # explicit and implicit VR, undefined-length sequences (QIN)


def test_cut_files_get_pydicom_codes(tmp_path: Path) -> None:
    data = slices(tmp_path, EXPLICIT, n=1)[0]
    scanned = 0
    for end in range(133, len(data), 53):
        scanned += scan_header(io.BytesIO(data[:end]), end) is not None
        assert outcome(data[:end]) == outcome(data[:end], pydicom_only=True), end
    assert scanned >= 10  # the cuts past the last wanted value take the fast path


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on the mutated values
def test_mutated_files_get_pydicom_answers(tmp_path: Path) -> None:
    rng = random.Random(5)
    base = slices(tmp_path, EXPLICIT) + slices(tmp_path, IMPLICIT)
    scanned = 0
    for i in range(300):
        _, data = mutate(base[i % len(base)], rng)
        scanned += scan_header(io.BytesIO(data), len(data)) is not None
        assert outcome(data) == outcome(data, pydicom_only=True), i
    assert scanned >= 100  # the comparison covers the scanner, not pydicom against itself


def test_unsupported_encodings_fall_back(tmp_path: Path) -> None:
    data = slices(tmp_path, EXPLICIT, n=1)[0]
    assert scan_header(io.BytesIO(data[128:]), len(data) - 128) is None  # no preamble
    big_endian = data.replace(EXPLICIT.encode(), b"1.2.840.10008.1.2.2")
    assert scan_header(io.BytesIO(big_endian), len(big_endian)) is None
