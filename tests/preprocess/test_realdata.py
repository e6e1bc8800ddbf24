"""Preprocessing verified on the four real TCIA studies (skipped where the data are absent).

Expensive loads are session fixtures (conftest.py): each study is extracted and preprocessed
once per test session.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pydicom
import pytest

from lungcad.imaging import Geometry

pytestmark = pytest.mark.realdata
log = logging.getLogger(__name__)

SERIES_UID_PREFIX = {"LIDC-IDRI-0001": "1.3.6.1.4.1.14519.5.2.1.6279.6001.1790",
                     "LIDC-IDRI-0003": "1.3.6.1.4.1.14519.5.2.1.6279.6001.1707"}
EXPECTED = {  # slices, slice spacing, pixel spacing (README)
    "LIDC-IDRI-0001": (133, 2.5, 0.703125), "LIDC-IDRI-0003": (140, 2.5, 0.820312),
    "QIN-LSC-0014": (109, 3.0, 0.6953125), "QIN-LSC-0088": (104, 3.0, 0.63671875),
}


def luna_nodules(shared_data: Path) -> list[tuple[str, np.ndarray, float]]:
    with (shared_data / "annotations" / "luna16_annotations_subset.csv").open() as fh:
        return [(r["seriesuid"], np.array([float(r["coordX"]), float(r["coordY"]),
                                           float(r["coordZ"])]), float(r["diameter_mm"]))
                for r in csv.DictReader(fh)]


def seg_centroids(folder: Path) -> list[np.ndarray]:
    """World (LPS mm) centroid of every DICOM-SEG object under ``folder``."""
    out = []
    for path in folder.rglob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if ds.Modality != "SEG":
            continue
        ds = pydicom.dcmread(path)
        frames = ds.pixel_array.reshape(-1, ds.Rows, ds.Columns)
        shared = ds.SharedFunctionalGroupsSequence[0]
        iop = np.array(shared.PlaneOrientationSequence[0].ImageOrientationPatient, float)
        dy, dx = (float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing)
        points = []
        for frame, fg in zip(frames, ds.PerFrameFunctionalGroupsSequence, strict=True):
            rows, cols = np.nonzero(frame)
            if rows.size == 0:
                continue
            ipp = np.array(fg.PlanePositionSequence[0].ImagePositionPatient, float)
            points.append(ipp + np.outer(cols * dx, iop[:3]) + np.outer(rows * dy, iop[3:]))
        out.append(np.concatenate(points).mean(axis=0))
    return out


def test_all_studies_load_with_right_spacing(real_results):
    for name, r in real_results.items():
        slices, step, pixel = EXPECTED[name]
        source = Geometry.from_dict(r.meta["source"]["geometry"])
        assert source.shape[0] == slices, name
        assert source.spacing == pytest.approx((step, pixel, pixel), abs=1e-4), name
        assert r.meta["source"]["format"] == "dicom"
        assert len(r.slices) == slices
        assert r.geometry.spacing == (1.0, 1.0, 1.0)


def test_hu_calibration(real_results):
    for name, r in real_results.items():
        hu = r.hu
        air = hu[(hu < -950)]
        assert -1024 <= np.median(air) <= -960, name
        lung = hu[r.lungs > 0]
        assert -900 <= np.median(lung) <= -700, (name, np.median(lung))
        soft = hu[(hu > -50) & (hu < 150)]
        counts, edges = np.histogram(soft, bins=np.arange(-50, 151, 10))
        mode = edges[np.argmax(counts)] + 5
        assert 0 <= mode <= 80, (name, mode)


def test_orientation_left_right_and_posterior(real_results):
    for name, r in real_results.items():
        g = r.geometry
        zz, yy, xx = np.nonzero(r.lungs == 1)
        right = g.index_to_world([zz.mean(), yy.mean(), xx.mean()])
        zz, yy, xx = np.nonzero(r.lungs == 2)
        left = g.index_to_world([zz.mean(), yy.mean(), xx.mean()])
        assert left[0] > right[0] + 80, name  # LPS x grows toward the patient's left
        bone = np.nonzero(r.hu > 400)
        bone_y = g.index_to_world(np.column_stack(bone).mean(axis=0))[1]
        assert bone_y > (left[1] + right[1]) / 2 - 20, name  # spine is posterior


def test_lung_volumes_physiological_and_separated(real_results):
    for name, r in real_results.items():
        vols = r.meta["lung_volumes_ml"]
        print(f"{name}: right {vols['right_ml']:.0f} mL, left {vols['left_ml']:.0f} mL")
        assert 800 <= vols["right_ml"] <= 5000, (name, vols)
        assert 700 <= vols["left_ml"] <= 5000, (name, vols)
        assert vols["right_ml"] / vols["left_ml"] < 2.0


def test_luna16_nodules_inside_lung_mask(real_results, shared_data):
    checked = 0
    for name, r in real_results.items():
        uid = r.meta["source"]["series_instance_uid"]
        for seriesuid, centre, diameter in luna_nodules(shared_data):
            if seriesuid != uid:
                continue
            voxel = r.geometry.world_to_voxel(centre)
            assert r.geometry.contains_index(voxel), (name, centre)
            assert r.lungs[tuple(voxel)] > 0, (name, centre, diameter)
            checked += 1
    assert checked == 4


def test_qin_tumour_centroids_inside_lung_mask(real_results, real_study_dirs):
    for name in ("QIN-LSC-0014", "QIN-LSC-0088"):
        r = real_results[name]
        centroids = seg_centroids(real_study_dirs[name])
        assert len(centroids) == 3
        for c in centroids:
            voxel = r.geometry.world_to_voxel(c)
            assert r.lungs[tuple(voxel)] > 0, (name, c)


def test_world_round_trip_within_1mm(real_results, shared_data):
    for _, centre, _ in luna_nodules(shared_data):
        for r in real_results.values():
            voxel = r.geometry.world_to_voxel(centre)
            back = r.geometry.index_to_world(voxel)
            assert np.linalg.norm(back - centre) <= 1.0


def test_reported_sop_is_the_slice_containing_the_point(real_results, real_study_dirs,
                                                        shared_data):
    for name in ("LIDC-IDRI-0001", "LIDC-IDRI-0003"):
        r = real_results[name]
        z_by_sop = {}
        for path in real_study_dirs[name].rglob("*.dcm"):
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            z_by_sop[ds.SOPInstanceUID] = float(ds.ImagePositionPatient[2])
        for seriesuid, centre, _ in luna_nodules(shared_data):
            if seriesuid != r.meta["source"]["series_instance_uid"]:
                continue
            hit = r.slices.locate(centre)
            nearest = min(z_by_sop, key=lambda s: abs(z_by_sop[s] - centre[2]))
            assert hit.sop_instance_uid == nearest
            assert abs(z_by_sop[hit.sop_instance_uid] - centre[2]) <= 1.25
            assert 0 <= hit.row < 512 and 0 <= hit.column < 512


def test_qin_series_chosen_over_seg_objects(real_results):
    for name in ("QIN-LSC-0014", "QIN-LSC-0088"):
        source = real_results[name].meta["source"]
        rejected = [c for c in source["candidates"] if c["rejected"]]
        assert len(rejected) == 3 and all(c["modality"] == "SEG" for c in rejected)
        assert "B4" in source["kernel"]


def test_slice_table_carries_each_slices_instance_number(real_results, real_study_dirs):
    """The image number PACS shows (InstanceNumber) for every slice of the original series,
    checked against each CT file's own header; in LIDC the numbers run against the slice
    order, so a slice index is not an image number."""
    for name, r in real_results.items():
        slices = r.slices
        headers = {}
        for path in real_study_dirs[name].rglob("*.dcm"):
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            if ds.Modality == "CT":
                headers[str(ds.SOPInstanceUID)] = int(ds.InstanceNumber)
        assert len(slices.instance_numbers) == len(slices) == EXPECTED[name][0]
        assert [headers[u] for u in slices.sop_instance_uids] == list(slices.instance_numbers)
        centre = np.asarray(slices.positions[len(slices) // 2])
        assert slices.locate(centre).instance_number == slices.instance_numbers[len(slices) // 2]
    numbers = real_results["LIDC-IDRI-0001"].slices.instance_numbers
    assert numbers[0] != 1  # numbered from the head down: index 0 is the lowest slice
