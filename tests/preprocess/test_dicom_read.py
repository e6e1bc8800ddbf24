"""Reading DICOM pixels to HU: sorting, rescale, padding, encodings and broken stacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from lungcad.errors import ProcessingError
from lungcad.imaging import Geometry
from lungcad.synthetic import write_dicom_series
from lungcad_preprocess.dicom_read import read_series
from lungcad_preprocess.dicom_series import choose_series, scan_dicom

SHAPE = (12, 32, 40)


def small_volume(seed: int = 0) -> tuple[np.ndarray, Geometry]:
    rng = np.random.default_rng(seed)
    hu = rng.integers(-1000, 1500, size=SHAPE).astype(np.int16)
    return hu, Geometry(SHAPE, (2.5, 0.8, 0.7), (-20.0, -30.0, -100.0))


def read_folder(folder: Path, **kw):
    series, _ = scan_dicom(sorted(p for p in folder.rglob("*") if p.is_file()))
    return read_series(choose_series(series, min_slices=kw.pop("min_slices", 5)).series, **kw)


@pytest.mark.parametrize("options", [
    {},
    {"signed": False},
    {"transfer_syntax": "1.2.840.10008.1.2"},  # implicit VR little endian
    {"transfer_syntax": "1.2.840.10008.1.2.5"},  # RLE lossless
    {"transfer_syntax": "1.2.840.10008.1.2.4.90", "signed": False},  # JPEG 2000 lossless
    {"rescale_intercept": -1000.0, "rescale_slope": 0.5},
], ids=["explicit-signed", "unsigned", "implicit", "rle", "jpeg2000", "slope"])
def test_hu_round_trip(tmp_path, options):
    hu, g = small_volume()
    if options.get("rescale_slope") == 0.5:
        hu = (hu // 2 * 2).astype(np.int16)  # representable with slope 0.5
    write_dicom_series(hu, g, tmp_path, **options)
    dv = read_folder(tmp_path)
    assert dv.volume.array.dtype == np.float32
    assert np.array_equal(dv.volume.array, np.maximum(hu, -1024).astype(np.float32))
    assert dv.volume.geometry.shape == g.shape
    assert np.allclose(dv.volume.geometry.origin, g.origin, atol=1e-4)
    assert np.allclose(dv.volume.geometry.spacing, g.spacing, atol=1e-4)


def test_slices_sorted_along_normal_not_by_file_name(tmp_path):
    hu, g = small_volume()
    paths = write_dicom_series(hu, g, tmp_path, shuffle_names=True)
    assert sorted(paths) != paths  # file names are not in slice order
    dv = read_folder(tmp_path)
    sop = [pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in paths]
    assert list(dv.slices.sop_instance_uids) == sop


def test_feet_first_descending_positions_are_sorted(tmp_path):
    hu, g = small_volume()
    flipped = Geometry(g.shape, g.spacing, (g.origin[0], g.origin[1], 0.0),
                       (1, 0, 0, 0, 1, 0, 0, 0, -1))
    write_dicom_series(hu, flipped, tmp_path)
    dv = read_folder(tmp_path)
    # sorted ascending along the normal (+z): reversed slice order, origin at the lowest slice
    assert np.array_equal(dv.volume.array, np.maximum(hu, -1024)[::-1].astype(np.float32))
    assert dv.volume.geometry.origin[2] == pytest.approx(-2.5 * (SHAPE[0] - 1))


def test_lidc_padding_value_in_signed_image(tmp_path):
    hu, g = small_volume()
    hu[:, :4, :] = -2000  # out of field, stored as padding
    paths = write_dicom_series(hu, g, tmp_path, rescale_intercept=-1024.0)
    for p in paths:  # LIDC writes the padding as the unsigned 63536 (= -2000 as int16)
        ds = pydicom.dcmread(p)
        ds.add_new(0x00280120, "US", 63536)
        ds.save_as(p)
    dv = read_folder(tmp_path)
    assert dv.volume.array[:, :4, :].max() == -1024
    assert dv.volume.array.min() == -1024
    assert dv.notes["padding_or_out_of_field_pixels"] >= 4 * SHAPE[0] * SHAPE[2]


def test_out_of_field_values_become_air(tmp_path):
    hu, g = small_volume()
    hu[:, 0, :] = -3024
    write_dicom_series(hu, g, tmp_path)
    assert read_folder(tmp_path).volume.array[:, 0, :].max() == -1024


def test_monochrome1_keeps_modality_lut_hu(tmp_path):
    hu, g = small_volume()
    write_dicom_series(hu, g, tmp_path, photometric="MONOCHROME1")
    assert np.array_equal(read_folder(tmp_path).volume.array, np.maximum(hu, -1024))


def test_missing_slice_fails(tmp_path):
    hu, g = small_volume()
    paths = write_dicom_series(hu, g, tmp_path)
    paths[5].unlink()
    with pytest.raises(ProcessingError) as err:
        read_folder(tmp_path)
    assert err.value.code == "missing_slices"


def test_uneven_spacing_is_regularised(tmp_path):
    hu, g = small_volume()
    hu = np.broadcast_to(np.arange(SHAPE[0], dtype=np.int16)[:, None, None] * 10,
                         SHAPE).astype(np.int16)
    paths = write_dicom_series(hu, g, tmp_path)
    for k, p in enumerate(paths):  # every other slice moved 0.5 mm up
        ds = pydicom.dcmread(p)
        ds.ImagePositionPatient[2] = float(ds.ImagePositionPatient[2]) + (0.5 if k % 2 else 0)
        ds.save_as(p)
    dv = read_folder(tmp_path)
    assert "uneven_spacing_mm" in dv.notes
    arr = dv.volume.array
    step = dv.volume.geometry.spacing[0]
    # values are linear in position: 10 HU per 2.5 mm
    expected = (np.arange(arr.shape[0]) * step) * 4.0
    got = arr[:, 0, 0]
    # value at the original slice positions is exact; linear in between
    assert np.allclose(got[0], 0) and np.all(np.diff(got) > 0)
    assert np.allclose(got, expected, atol=6.0)


def test_gantry_tilt_is_carried_in_the_direction(tmp_path):
    hu, g = small_volume()
    tilt = np.radians(15)
    d = np.column_stack([[1, 0, 0], [0, 1, 0], [0, np.sin(tilt), np.cos(tilt)]])
    tilted = Geometry(g.shape, (2.5 / np.cos(tilt), 0.8, 0.7), g.origin, d.ravel())
    write_dicom_series(hu, tilted, tmp_path)
    dv = read_folder(tmp_path)
    assert dv.notes["gantry_tilt_deg"] == pytest.approx(15, abs=0.1)
    got = dv.volume.geometry
    assert np.allclose(got.index_to_world([7, 3, 2]), tilted.index_to_world([7, 3, 2]), atol=1e-3)


def test_inconsistent_orientation_fails(tmp_path):
    hu, g = small_volume()
    paths = write_dicom_series(hu, g, tmp_path)
    ds = pydicom.dcmread(paths[3])
    ds.ImageOrientationPatient = [0.98, 0.2, 0, -0.2, 0.98, 0]
    ds.save_as(paths[3])
    with pytest.raises(ProcessingError) as err:
        read_folder(tmp_path)
    assert err.value.code == "inconsistent_orientation"


def test_inconsistent_pixel_spacing_fails(tmp_path):
    hu, g = small_volume()
    paths = write_dicom_series(hu, g, tmp_path)
    ds = pydicom.dcmread(paths[3])
    ds.PixelSpacing = [0.9, 0.9]
    ds.save_as(paths[3])
    with pytest.raises(ProcessingError) as err:
        read_folder(tmp_path)
    assert err.value.code == "inconsistent_pixel_spacing"


def test_absurd_dimensions_fail_before_decoding(tmp_path):
    hu, g = small_volume()
    paths = write_dicom_series(hu, g, tmp_path)
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.Rows = ds.Columns = 65535
        ds.save_as(p)
    with pytest.raises(ProcessingError) as err:
        read_folder(tmp_path)
    assert err.value.code == "dimensions_too_large"


def test_truncated_pixel_data_fails(tmp_path):
    hu, g = small_volume()
    paths = write_dicom_series(hu, g, tmp_path)
    data = paths[4].read_bytes()
    paths[4].write_bytes(data[: len(data) - 1000])
    with pytest.raises(ProcessingError) as err:
        read_folder(tmp_path)
    assert err.value.code in {"truncated_file", "unreadable_pixels"}


def test_enhanced_multiframe_ct(tmp_path):
    hd = pytest.importorskip("highdicom")
    hu, g = small_volume()
    paths = write_dicom_series(hu, g, tmp_path / "legacy", shuffle_names=False)
    legacy = [pydicom.dcmread(p) for p in paths]
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(
        legacy, series_instance_uid=hd.UID(), series_number=9, sop_instance_uid=hd.UID(),
        instance_number=1)
    (tmp_path / "mf").mkdir()
    enhanced.save_as(tmp_path / "mf" / "enhanced.dcm")
    dv = read_folder(tmp_path / "mf")
    assert np.array_equal(dv.volume.array, np.maximum(hu, -1024))
    assert dv.slices.frame_numbers[0] is not None
    assert len(set(dv.slices.sop_instance_uids)) == 1
