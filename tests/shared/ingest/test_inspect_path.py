"""``lungcad analyze``'s inputs go through the upload gate: a folder as its zip would, a file as
its upload would, an .mhd with the data file beside it."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from lungcad.errors import InvalidInput
from lungcad.ingest.inspect import inspect_path
from lungcad.settings import Settings
from tests.factories import ct_series, deflated, metaimage, nifti


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return Settings(env="development", data_dir=tmp_path / "data")


def test_local_inputs_pass_the_gate(tmp_path: Path, settings: Settings) -> None:
    study = tmp_path / "study"
    paths = ct_series(study, n=3)
    (study / "notes.txt").write_text("skipped, as in a zip")
    (study / ".DS_Store").write_bytes(b"\0" * 10)
    summary = inspect_path(study, settings)
    assert (summary.format, summary.dicom_files) == ("dicom", 3)
    paths[0].write_bytes(deflated(paths[0].read_bytes()))
    assert inspect_path(study, settings).dicom_files == 3
    with zipfile.ZipFile(tmp_path / "study.zip", "w") as zf:
        for path in paths:
            zf.write(path, path.name)
    assert inspect_path(tmp_path / "study.zip", settings).format == "zip"
    mhd, raw = metaimage(tmp_path / "volume")
    assert inspect_path(mhd, settings).format == "metaimage"
    assert inspect_path(mhd.parent, settings).format == "metaimage"
    (tmp_path / "nii").mkdir()
    nii = nifti(tmp_path / "nii" / "ct.nii.gz", gz=True)
    assert inspect_path(nii, settings).format == "nifti"
    assert inspect_path(nii.parent, settings).format == "nifti"


def test_local_inputs_get_the_uploads_refusals(tmp_path: Path, settings: Settings) -> None:
    mhd, raw = metaimage(tmp_path / "volume")
    with pytest.raises(InvalidInput) as refused:
        inspect_path(raw, settings)
    assert refused.value.code == "metaimage_missing_header"
    raw.unlink()
    with pytest.raises(InvalidInput) as refused:
        inspect_path(mhd, settings)
    assert refused.value.code == "metaimage_missing_data"
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images")
    with pytest.raises(InvalidInput) as refused:
        inspect_path(tmp_path / "empty", settings)
    assert refused.value.code == "not_medical_image"
