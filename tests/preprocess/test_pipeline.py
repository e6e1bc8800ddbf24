"""End to end on the synthetic chest CT: canonical grid, mapping back, lungs and nodules."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from lungcad.errors import ProcessingError
from lungcad.imaging import Geometry
from lungcad.synthetic import default_geometry, make_chest_ct, write_dicom_series
from lungcad_preprocess.pipeline import preprocess_path


def test_canonical_volume(synthetic_result):
    r = synthetic_result
    assert r.hu.dtype == np.int16 and r.lungs.dtype == np.uint8
    assert r.hu.shape == r.lungs.shape == r.geometry.shape
    assert r.geometry.spacing == (1.0, 1.0, 1.0)
    assert r.geometry.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    assert set(r.timings_s) == {"read", "resample", "segment"}


def test_lungs_match_truth_and_sides(synthetic_ct, synthetic_result):
    r, ct = synthetic_result, synthetic_ct
    zz, yy, xx = np.nonzero(r.lungs)
    world = r.geometry.index_to_world(np.column_stack([zz, yy, xx])[::50])
    truth_idx = ct.geometry.world_to_voxel(world)
    ok = ct.geometry.contains_index(truth_idx)
    truth = ct.lungs[tuple(truth_idx[ok].T)]
    labels = r.lungs[zz, yy, xx][::50][ok]
    agreement = np.mean(truth == labels)
    assert agreement > 0.93, agreement
    vols = r.meta["lung_volumes_ml"]
    true_ml = [np.sum(ct.lungs == i) * ct.geometry.voxel_volume_ml for i in (1, 2)]
    assert vols["right_ml"] == pytest.approx(true_ml[0], rel=0.12)
    assert vols["left_ml"] == pytest.approx(true_ml[1], rel=0.12)


def test_every_nodule_centre_is_in_the_mask(synthetic_ct, synthetic_result):
    r = synthetic_result
    for n in synthetic_ct.nodules:
        v = r.geometry.world_to_voxel(n.center_lps)
        assert r.lungs[tuple(v)] > 0, n


def test_trachea_is_excluded(synthetic_result):
    r = synthetic_result
    v = r.geometry.world_to_voxel((0.0, -15.0, 100.0))  # trachea above the carina
    assert r.hu[tuple(v)] < -900
    assert r.lungs[tuple(v)] == 0


def test_world_index_round_trip_and_sop_mapping(synthetic_series, synthetic_result):
    r = synthetic_result
    point = np.array([-80.3, 10.2, 21.1])
    idx = r.geometry.world_to_index(point)
    assert np.linalg.norm(r.geometry.index_to_world(idx) - point) < 1e-6
    voxel = r.geometry.world_to_voxel(point)
    assert np.linalg.norm(r.geometry.index_to_world(voxel) - point) <= np.sqrt(3) / 2 + 1e-6
    hit = r.slices.locate(point)
    ds = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID:
          pydicom.dcmread(p, stop_before_pixels=True) for p in synthetic_series.iterdir()}
    chosen = ds[hit.sop_instance_uid]
    assert abs(float(chosen.ImagePositionPatient[2]) - point[2]) <= 2.5 / 2
    original = Geometry.from_dict(r.meta["source"]["geometry"])
    k, row, col = original.world_to_index(point)
    assert round(k) == hit.index
    assert row == pytest.approx(hit.row) and col == pytest.approx(hit.column)


def test_no_patient_data_in_metadata(synthetic_result):
    text = repr(synthetic_result.meta)
    for phi in ("SYNTHETIC^PATIENT", "SYN0001", "19640101", "ACC0001", "Synthetic General",
                "REFERRER", "20240102"):
        assert phi not in text


def test_partial_coverage_and_emphysema(tmp_path):
    g = default_geometry((40, 160, 160), (2.5, 2.2, 2.2))  # 100 mm of the chest only
    ct = make_chest_ct(g, seed=3)
    hu = ct.hu.copy()
    hu[ct.lungs > 0] = np.minimum(hu[ct.lungs > 0], -960)  # severe emphysema: near air
    write_dicom_series(hu, g, tmp_path)
    r = preprocess_path(tmp_path)
    vols = r.meta["lung_volumes_ml"]
    assert vols["right_ml"] > 300 and vols["left_ml"] > 300


def test_no_lungs_found(tmp_path):
    g = default_geometry((24, 96, 96), (5.0, 3.6, 3.6))
    hu = np.full(g.shape, 40, np.int16)  # a solid block: no air inside the body
    write_dicom_series(hu, g, tmp_path)
    with pytest.raises(ProcessingError) as err:
        preprocess_path(tmp_path)
    assert err.value.code == "no_lungs_found"
