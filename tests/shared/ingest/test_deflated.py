"""Deflated Explicit VR Little Endian files: the upload gate inflates them (within a limit) and
checks the pixel data of the inflated data set, not the offsets of the deflated bytes."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from lungcad.errors import InvalidInput
from lungcad.ingest.dicom_header import read_summary
from tests.factories import ct_series, deflated


def summary_or_code(data: bytes, limit: int | None = None) -> object:
    limits = {} if limit is None else {"inflate_limit": limit}
    try:
        return read_summary(io.BytesIO(data), len(data), "f.dcm", **limits)
    except InvalidInput as exc:
        return exc.code, exc.message


def test_deflated_slice_reads_like_the_original(tmp_path: Path) -> None:
    data = ct_series(tmp_path, n=1)[0].read_bytes()
    packed = deflated(data)
    assert packed[:132] == data[:132] and packed != data
    assert summary_or_code(packed) == summary_or_code(data)
    assert summary_or_code(packed).is_ct_image  # type: ignore[union-attr]


def test_cut_pixel_data_inside_the_deflate_stream_is_measured(tmp_path: Path) -> None:
    data = ct_series(tmp_path, n=1)[0].read_bytes()  # 32 x 32 x 16 bits: 2048 bytes
    assert summary_or_code(deflated(data, pixel_bytes=1500)) == (
        "truncated_file", "f.dcm: the file ends before its pixel data does (has 1500 bytes of "
        "pixel data, needs 2048).")


def test_broken_deflate_streams_are_refused(tmp_path: Path) -> None:
    packed = deflated(ct_series(tmp_path, n=1)[0].read_bytes())
    code, message = summary_or_code(packed[:-40])  # type: ignore[misc]
    assert code == "truncated_file" and "deflate stream" in message
    middle = len(packed) // 2
    garbage = packed[:middle] + b"\xff" * 16 + packed[middle + 16:]
    assert summary_or_code(garbage) == ("invalid_dicom", "f.dcm: the deflated data set is "
                                        "corrupt (it cannot be inflated).")
    code, message = summary_or_code(packed, limit=1000)  # type: ignore[misc]
    assert code == "zip_bomb" and "beyond 1000 bytes" in message


@pytest.mark.realdata
def test_real_slices_deflated_read_like_the_originals(shared_data: Path) -> None:
    with zipfile.ZipFile(shared_data / "ct" / "LIDC-IDRI-0001.zip") as zf:
        slices = [zf.read(i) for i in zf.infolist() if not i.is_dir()]
    slices = [d for d in slices if d[128:132] == b"DICM"][:3]
    assert len(slices) == 3
    for data in slices:
        summary = summary_or_code(deflated(data))
        assert summary == summary_or_code(data) and summary.is_ct_image  # type: ignore[union-attr]
