"""Series discovery and the documented selection rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from lungcad.errors import ProcessingError
from lungcad.imaging import Geometry
from lungcad.synthetic import write_dicom_series
from lungcad_preprocess.dicom_series import choose_series, scan_dicom

HU = np.full((12, 16, 16), -800, np.int16)


def geometry(n: int = 12, step: float = 2.5, z0: float = -100.0) -> Geometry:
    return Geometry((n, 16, 16), (step, 1.0, 1.0), (0.0, 0.0, z0))


def write(folder: Path, hu=HU, g=None, **kw) -> str:
    uid = pydicom.uid.generate_uid()
    write_dicom_series(hu, g or geometry(len(hu)), folder, series_uid=uid, **kw)
    return uid


def choose(folder: Path, **kw):
    series, skipped = scan_dicom(sorted(p for p in folder.rglob("*") if p.is_file()))
    return choose_series(series, min_slices=kw.pop("min_slices", 10), **kw), skipped


def test_mixed_series_in_one_folder_are_separated(tmp_path):
    thick = write(tmp_path / "a", HU[:6], geometry(6, 5.0))
    thin = write(tmp_path / "b", np.full((24, 16, 16), -800, np.int16), geometry(24, 1.25))
    for p in (tmp_path / "a").iterdir():  # same folder, interleaved
        p.rename(tmp_path / "b" / f"x{p.name}")
    choice, _ = choose(tmp_path, min_slices=5)
    assert choice.series.uid == thin
    assert len(choice.series.slices) == 24
    assert {c["series_instance_uid"] for c in choice.candidates} == {thin, thick}


def test_most_coverage_then_thinnest_then_kernel(tmp_path):
    write(tmp_path / "short", HU[:10], geometry(10, 1.0))
    thin_bone = write(tmp_path / "bone", HU, geometry(12, 2.0), convolution_kernel="BONE",
                      series_description="CHEST BONE")
    thin_lung = write(tmp_path / "lung", HU, geometry(12, 2.0), convolution_kernel="LUNG")
    thick = write(tmp_path / "thick", HU, geometry(12, 2.5))
    choice, _ = choose(tmp_path)
    assert choice.series.uid == thin_lung, choice.reason  # short series: least coverage
    assert thin_bone != thick
    assert "kernel LUNG" in choice.reason


def test_requested_series_wins_and_unknown_fails(tmp_path):
    a = write(tmp_path / "a", HU, geometry(12, 2.5))
    write(tmp_path / "b", HU, geometry(12, 1.0))
    choice, _ = choose(tmp_path, requested_uid=a)
    assert choice.series.uid == a and choice.reason == "requested by the caller"
    with pytest.raises(ProcessingError) as err:
        choose(tmp_path, requested_uid="1.2.3.4")
    assert err.value.code == "series_not_found"


def test_localizer_only(tmp_path):
    write(tmp_path, HU[:1], geometry(1), image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    with pytest.raises(ProcessingError) as err:
        choose(tmp_path)
    assert err.value.code == "localizer_only"


def test_localizer_beside_axial_is_skipped(tmp_path):
    write(tmp_path / "loc", HU[:2], geometry(2), image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    axial = write(tmp_path / "ax", HU)
    choice, _ = choose(tmp_path)
    assert choice.series.uid == axial
    rejected = [c["rejected"] for c in choice.candidates if c["rejected"]]
    assert rejected == ["a localizer / scout"]


def test_single_slice_is_too_few(tmp_path):
    write(tmp_path, HU[:1], geometry(1))
    with pytest.raises(ProcessingError) as err:
        choose(tmp_path)
    assert err.value.code == "too_few_slices"


def test_non_ct_series_fails(tmp_path):
    write(tmp_path, HU, modality="MR")
    with pytest.raises(ProcessingError) as err:
        choose(tmp_path)
    assert err.value.code == "no_ct_series"
    assert "MR" in err.value.message


def test_reformat_is_not_axial(tmp_path):
    coronal = Geometry((12, 16, 16), (2.5, 1.0, 1.0), (0, 0, 0), (1, 0, 0, 0, 0, -1, 0, 1, 0))
    write(tmp_path, HU, coronal)
    with pytest.raises(ProcessingError) as err:
        choose(tmp_path)
    assert err.value.code == "no_axial_series"


def test_non_dicom_files_are_skipped(tmp_path):
    axial = write(tmp_path, HU)
    (tmp_path / "README.txt").write_text("not dicom")
    (tmp_path / "truncated.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")
    choice, skipped = choose(tmp_path)
    assert choice.series.uid == axial
    assert {p.name for p in skipped} == {"README.txt", "truncated.dcm"}


def test_nothing_readable(tmp_path):
    with pytest.raises(ProcessingError) as err:
        choose_series([])
    assert err.value.code == "no_dicom_images"
