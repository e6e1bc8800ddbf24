"""Readers on the real shared data: LIDC XML consensus against the LUNA16 rows, and QIN
DICOM-SEG tumour volumes (skipped with a reason when the data are absent)."""

from __future__ import annotations

import numpy as np
import pytest

from lungcad_inference.data.luna16 import read_annotations

pytestmark = pytest.mark.realdata


def test_lidc_consensus_matches_luna16(study_loader, shared_data) -> None:  # type: ignore[no-untyped-def]
    study = study_loader("LIDC-IDRI-0003")
    luna = read_annotations(shared_data / "annotations" / "luna16_annotations_subset.csv")
    rows = luna[study.series_uid]
    assert len(study.lesions) == len(rows) == 3
    for row in rows:
        d = [np.linalg.norm(np.subtract(les.centre_mm, row.centre_mm)) for les in study.lesions]
        assert min(d) < 3.0
    assert sorted(les.malignancy for les in study.lesions if les.malignancy is not None) == [1]


def test_qin_seg_tumour_volume(study_loader) -> None:  # type: ignore[no-untyped-def]
    study = study_loader("QIN-LSC-0088")
    assert len(study.lesions) == 1
    vols = study.lesions[0].extra["volumes_ml"]
    assert vols == pytest.approx([2.0, 1.9, 2.1], abs=0.1)
    assert study.lesion_mask is not None and 1500 < int(study.lesion_mask.sum()) < 2600


def test_vois_count_and_labels(real_vois) -> None:  # type: ignore[no-untyped-def]
    assert len(real_vois) == 812  # 814 rows; two image files are absent from the zip
    labels = [v.label for v in real_vois]
    assert labels.count(1) == 211 and labels.count(0) == 316
