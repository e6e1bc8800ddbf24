from __future__ import annotations

import numpy as np
import pydicom

from lungcad.synthetic import write_dicom_series
from lungcad_preprocess.deid import deidentify_dataset, deidentify_file, replacement_uid
from lungcad_preprocess.pipeline import PreprocessOptions, read_input
from tests.preprocess.test_dicom_read import small_volume

SALT = b"test-salt"
PHI = ("SYNTHETIC^PATIENT", "SYN0001", "19640101", "ACC0001", "Synthetic General Hospital",
       "REFERRER^DR", "20240102")


def test_basic_profile_scrubs_identifiers_and_keeps_pixels(tmp_path):
    hu, g = small_volume()
    paths = write_dicom_series(hu, g, tmp_path / "in")
    ds = pydicom.dcmread(paths[0])
    ds.add_new(0x00091010, "LO", "private secret")
    out, notes = deidentify_dataset(ds, SALT)
    text = str(out)
    for value in PHI:
        assert value not in text
    assert out.PatientIdentityRemoved == "YES"
    assert out.PatientAge == "060Y" and out.PatientSex == "F"  # retained characteristics
    assert out.SOPInstanceUID == replacement_uid(ds.SOPInstanceUID, SALT) != ds.SOPInstanceUID
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    assert out.SOPClassUID == ds.SOPClassUID
    assert 0x00091010 not in out
    assert np.array_equal(out.pixel_array, ds.pixel_array)
    assert notes == {"burned_in_annotation": False}
    assert ds.PatientName == "SYNTHETIC^PATIENT"  # the input is not modified
    stripped, _ = deidentify_dataset(ds, SALT, retain_patient_characteristics=False)
    assert "PatientAge" not in stripped and stripped.PatientSex == ""


def test_deidentified_series_still_reads_identically(tmp_path):
    hu, g = small_volume()
    paths = write_dicom_series(hu, g, tmp_path / "in")
    for p in paths:
        deidentify_file(p, tmp_path / "out" / p.name, SALT)
    before, src_before = read_input(tmp_path / "in", PreprocessOptions(min_slices=5))
    after, src_after = read_input(tmp_path / "out", PreprocessOptions(min_slices=5))
    assert np.array_equal(before.array, after.array)
    assert before.geometry == after.geometry
    assert src_after["series_instance_uid"] == replacement_uid(src_before["series_instance_uid"],
                                                                SALT)
