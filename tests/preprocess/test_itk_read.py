"""NIfTI / MetaImage / NRRD through SimpleITK, with orientation honoured."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from lungcad.errors import ProcessingError
from lungcad.imaging import Geometry, Volume
from lungcad_preprocess.itk_read import read_itk_volume
from lungcad_preprocess.pipeline import PreprocessOptions, read_input


@pytest.mark.parametrize("suffix", [".nii.gz", ".mha", ".nrrd", ".mhd"])
def test_round_trip_keeps_geometry(tmp_path, suffix):
    rng = np.random.default_rng(0)
    arr = rng.integers(-1000, 1000, (12, 20, 24)).astype(np.int16)
    flipped = (-1, 0, 0, 0, -1, 0, 0, 0, 1)  # RAS-style axes, as many NIfTI files are
    g = Geometry(arr.shape, (2.0, 0.9, 0.8), (120.0, 110.0, -50.0), flipped)
    path = tmp_path / f"ct{suffix}"
    sitk.WriteImage(Volume(arr, g).to_sitk(), str(path))
    v = read_itk_volume(path)
    assert v.geometry.shape == g.shape
    assert np.allclose(v.geometry.direction, g.direction)
    assert np.allclose(v.geometry.origin, g.origin, atol=1e-4)
    assert np.array_equal(v.array, np.maximum(arr, -1024))
    volume, source = read_input(tmp_path, PreprocessOptions(min_slices=5))
    assert source["format"] == suffix.lstrip(".")


def test_nifti_and_dicom_give_the_same_canonical_volume(tmp_path, synthetic_ct,
                                                        synthetic_result):
    g = synthetic_ct.geometry
    # store the same anatomy with the x and y axes reversed (RAS-like) in a NIfTI file
    arr = synthetic_ct.hu[:, ::-1, ::-1]
    corner = g.index_to_world([0, g.shape[1] - 1, g.shape[2] - 1])
    ras = Geometry(g.shape, g.spacing, tuple(corner), (-1, 0, 0, 0, -1, 0, 0, 0, 1))
    sitk.WriteImage(Volume(np.ascontiguousarray(arr), ras).to_sitk(), str(tmp_path / "ct.nii.gz"))
    from lungcad_preprocess.pipeline import preprocess_path

    r = preprocess_path(tmp_path / "ct.nii.gz")
    assert r.geometry.shape == synthetic_result.geometry.shape
    assert np.allclose(r.geometry.origin, synthetic_result.geometry.origin, atol=1e-4)
    assert r.geometry.direction == synthetic_result.geometry.direction
    assert np.mean(r.lungs == synthetic_result.lungs) > 0.999
    assert np.abs(r.hu.astype(int) - synthetic_result.hu).max() <= 1


def test_truncated_and_wrong_files(tmp_path):
    arr = np.zeros((12, 20, 24), np.int16)
    path = tmp_path / "ct.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ProcessingError) as err:
        read_itk_volume(path)
    assert err.value.code == "truncated_file"
    bad = tmp_path / "x.nii"
    bad.write_bytes(b"not an image")
    with pytest.raises(ProcessingError) as err:
        read_itk_volume(bad)
    assert err.value.code == "unreadable_image"
    flat = tmp_path / "flat.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((20, 24), np.int16)), str(flat))
    with pytest.raises(ProcessingError) as err:
        read_itk_volume(flat)
    assert err.value.code == "unsupported_image"
