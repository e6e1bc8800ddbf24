"""Each refusal of the upload gate (shared by the gateway and ``lungcad analyze``) names the true
fault of the file in a sentence, with no Python exception text and no 'None'."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import RLELossless

from lungcad.errors import InvalidInput
from lungcad.ingest.dicom_header import read_summary
from lungcad.ingest.inspect import UploadPart, inspect_upload
from lungcad.settings import Settings
from tests.factories import SC_STORAGE, ct_slice, metaimage


def refusal(paths: list[Path], tmp_path: Path) -> InvalidInput:
    parts = [UploadPart(p, p.name, p.stat().st_size) for p in paths]
    with pytest.raises(InvalidInput) as refused:
        inspect_upload(parts, Settings(env="development", data_dir=tmp_path / "data"))
    assert "None" not in refused.value.message and "Error" not in refused.value.message
    return refused.value


def one_slice(tmp_path: Path, **kwargs: object) -> Path:
    return ct_slice(tmp_path / "slice.dcm", 0, pydicom.uid.generate_uid(),
                    pydicom.uid.generate_uid(), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("syntax", [None, RLELossless])
def test_ct_header_without_pixel_data(tmp_path: Path, syntax: str | None) -> None:
    path = one_slice(tmp_path)
    ds = pydicom.dcmread(path)
    del ds.PixelData
    if syntax is not None:  # compressed: no expected length to compare with
        ds.file_meta.TransferSyntaxUID = syntax
    ds.save_as(path)
    refused = refusal([path], tmp_path)
    assert refused.code == "no_pixel_data"
    assert "no pixel data" in refused.message and "Rows 32, Columns 32" in refused.message


def test_secondary_capture_labelled_ct_says_what_it_is(tmp_path: Path) -> None:
    path = one_slice(tmp_path, sop_class=SC_STORAGE)
    refused = refusal([path], tmp_path)
    assert refused.code == "not_ct"
    assert "Secondary Capture Image Storage (modality CT) x1" in refused.message


def test_ybr_full_422_counts_its_subsampled_bytes(tmp_path: Path) -> None:
    data = Path(get_testdata_file("SC_ybr_full_422_uncompressed.dcm")).read_bytes()
    summary = read_summary(io.BytesIO(data), len(data), "ybr.dcm")  # 100 x 100, 4:2:2
    assert summary is not None and summary.is_image
    cut = data[:-100]
    with pytest.raises(InvalidInput) as refused:
        read_summary(io.BytesIO(cut), len(cut), "ybr.dcm")
    assert refused.value.code == "truncated_file"
    assert "has 19900 bytes of pixel data, needs 20000" in refused.value.message


def nested_sequences(depth: int) -> bytes:
    """(0008,1140) sequences of undefined length, each the only item of the one above."""
    sequence = struct.pack("<HH2sHI", 0x0008, 0x1140, b"SQ", 0, 0xFFFFFFFF)
    item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    ends = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return (sequence + item) * depth + ends * depth


def test_deep_nesting_is_refused_without_pythons_words(tmp_path: Path) -> None:
    path = one_slice(tmp_path)
    data = path.read_bytes()
    at = data.find(b"\x10\x00\x10\x00PN")  # PatientName: after every (0008,xxxx) element
    path.write_bytes(data[:at] + nested_sequences(2000) + data[at:])
    refused = refusal([path], tmp_path)
    assert refused.code == "invalid_dicom"
    assert "nests sequences too deeply" in refused.message
    assert "recursion" not in refused.message.lower()


def test_empty_file_is_named(tmp_path: Path) -> None:
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    refused = refusal([empty], tmp_path)
    assert refused.code == "empty_upload"
    assert refused.message == "The file 'empty.dcm' is empty (0 bytes): nothing to analyse."
    second = tmp_path / "second.dcm"
    second.write_bytes(b"")
    assert refusal([empty, second], tmp_path).message.startswith("All 2 files are empty")


def test_metaimage_data_without_its_header(tmp_path: Path) -> None:
    _, raw = metaimage(tmp_path / "m")
    refused = refusal([raw], tmp_path)
    assert refused.code == "metaimage_missing_header"
    assert refused.message.startswith("vol.raw: a MetaImage data file needs its .mhd header")
    other = raw.with_name("other.raw")
    other.write_bytes(raw.read_bytes())
    assert refusal([raw, other], tmp_path).code == "metaimage_missing_header"
