"""Measurements on the real shared studies, with candidates placed at the reference positions
(so this checks segmentation and measurement, not detection): LUNA16 nodule diameters within
3 mm, QIN tumour volumes within the three algorithms' spread +/- 30 %, and each finding mapped
to the original slice that contains it.

LUNA16's ``diameter_mm`` is volumetric (it matches the diameter of the sphere of the readers'
segmented volume), so it is compared with ``equivalent_diameter_mm``; the long axis that
radiologists measure on irregular nodules is longer, and is printed beside it."""

from __future__ import annotations

import csv
from dataclasses import dataclass

import numpy as np
import pytest

from lungcad.findings import ModelInfo
from lungcad_inference.analysis import PatientInfo, analyze_volume

pytestmark = pytest.mark.realdata

LIDC_SERIES = {"1.3.6.1.4.1.14519.5.2.1.6279.6001.179049373636438705059720603192":
               "LIDC-IDRI-0001",
               "1.3.6.1.4.1.14519.5.2.1.6279.6001.170706757615202213033480003264":
               "LIDC-IDRI-0003"}
# From ../shared/data/README.md: the three algorithms' volumes (mL) and the centroid (row,
# column, z mm) on the CT series.
QIN = {"QIN-LSC-0088": ((2.0, 1.9, 2.1), (331, 151, 344.8)),
       "QIN-LSC-0014": ((6.7, 5.9, 8.3), (307, 222, 237.0))}


@dataclass
class Placed:
    centre_zyx: tuple[float, float, float]
    diameter_mm: float
    nodule_probability: float = 1.0
    malignancy_probability: float = 0.5


def analyze(result, world: np.ndarray, diameter: float):  # type: ignore[no-untyped-def]
    candidate = Placed(tuple(result.geometry.world_to_index(world)), diameter)
    return analyze_volume(result.hu, result.lungs, result.geometry, result.meta, [candidate],
                          PatientInfo(), ModelInfo(name="reference-positions", version="0"))


def luna_rows(shared_data) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    with open(shared_data / "annotations" / "luna16_annotations_subset.csv") as handle:
        return list(csv.DictReader(handle))


def test_luna16_nodule_diameters_within_3mm(real_results, shared_data) -> None:  # type: ignore[no-untyped-def]
    rows = luna_rows(shared_data)
    assert len(rows) == 4
    for row in rows:
        result = real_results[LIDC_SERIES[row["seriesuid"]]]
        world = np.array([float(row["coordX"]), float(row["coordY"]), float(row["coordZ"])])
        reference = float(row["diameter_mm"])
        doc = analyze(result, world, reference).document
        assert len(doc.findings) == 1
        finding = doc.findings[0]
        print(f"{LIDC_SERIES[row['seriesuid']]} LUNA16 {reference:.1f} mm -> equivalent "
              f"{finding.equivalent_diameter_mm:.1f} mm; long axis {finding.diameter_mm:.1f}, "
              f"short {finding.short_axis_mm:.1f} mm, {finding.volume_mm3:.0f} mm3, "
              f"{finding.type}, Lung-RADS {finding.lung_rads.category}")
        assert abs(finding.equivalent_diameter_mm - reference) <= 3.0
        assert finding.diameter_mm >= finding.equivalent_diameter_mm - 1.0
        assert np.linalg.norm(np.asarray(finding.center_mm) - world) < reference / 2
        slices = result.slices
        col, row_px, k = finding.center_voxel
        assert finding.sop_instance_uid == slices.sop_instance_uids[k]
        assert abs(slices.offsets_mm[k] - np.asarray(finding.center_mm) @ slices.normal) <= 1.3


def test_qin_tumour_volumes_within_the_algorithms_spread(real_results) -> None:  # type: ignore[no-untyped-def]
    for name, (volumes, (row, col, z)) in QIN.items():
        result = real_results[name]
        slices = result.slices
        k = int(np.argmin(np.abs(np.asarray(slices.positions)[:, 2] - z)))
        origin = np.asarray(slices.positions[k])
        spacing = slices.pixel_spacing
        world = (origin + col * spacing[1] * np.asarray(slices.row_direction)
                 + row * spacing[0] * np.asarray(slices.column_direction))
        diameter = 2 * (3 * np.mean(volumes) * 1000 / (4 * np.pi)) ** (1 / 3)
        doc = analyze(result, world, diameter).document
        measured_ml = doc.findings[0].volume_mm3 / 1000
        low, high = min(volumes) * 0.7, max(volumes) * 1.3
        print(f"{name}: algorithms {volumes} mL -> measured {measured_ml:.2f} mL "
              f"(accepted {low:.2f}-{high:.2f}), long axis {doc.findings[0].diameter_mm} mm")
        assert low <= measured_ml <= high
