"""The upload gate's DICOM header reader on bytes that only look like elements: it must refuse
them from their first element, not walk them (pydicom's forced read took 58 s for 60 MB of
zeros in a 58 KB zip)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from lungcad.errors import InvalidInput
from lungcad.ingest.dicom_header import read_summary
from tests.factories import ct_series


class CountingStream(io.BytesIO):
    """Counts the bytes read through it."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.bytes_read += len(data)
        return data


SIZE = 20 * 1024 * 1024


def test_zeros_are_not_dicom_and_are_not_walked() -> None:
    stream = CountingStream(b"\0" * SIZE)
    assert read_summary(stream, SIZE, "a.dcm") is None
    assert stream.bytes_read <= 140


def test_zeros_after_a_preamble_are_a_corrupt_header_at_once() -> None:
    data = b"\0" * 128 + b"DICM" + b"\0" * SIZE
    stream = CountingStream(data)
    with pytest.raises(InvalidInput) as refused:
        read_summary(stream, len(data), "a.dcm")
    assert refused.value.code == "invalid_dicom" and stream.bytes_read <= 140


def test_a_real_slice_still_reads_with_and_without_its_preamble(tmp_path: Path) -> None:
    data = ct_series(tmp_path, n=1)[0].read_bytes()
    with_preamble = read_summary(io.BytesIO(data), len(data), "a.dcm")
    raw = data[128 + 4:]  # old writers: no preamble, the file meta first
    without = read_summary(io.BytesIO(raw), len(raw), "a.dcm")
    assert with_preamble is not None and without is not None
    assert with_preamble.series_uid == without.series_uid and with_preamble.is_ct_image
