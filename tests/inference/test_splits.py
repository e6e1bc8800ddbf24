"""The shared patient split: stable, independent of the other patients, never splitting one."""

from __future__ import annotations

import numpy as np

from lungcad_inference.training.splits import FOLDS, fold_array, fold_of


def test_fold_is_a_function_of_the_patient_alone() -> None:
    patients = [f"LIDC-IDRI-{i:04d}" for i in range(1, 400)]
    folds = fold_array(patients)
    assert set(folds) == set(range(FOLDS))
    assert all(fold_of(p) == f for p, f in zip(patients, folds, strict=True))
    assert fold_array(patients[::-1])[::-1].tolist() == folds.tolist()
    counts = np.bincount(folds)
    assert counts.min() > 0.6 * counts.mean()  # roughly balanced


def test_known_folds_do_not_change() -> None:
    # the split is part of every model card figure: a change here invalidates them
    names = ("LIDC-IDRI-0001", "LIDC-IDRI-0003", "QIN-LSC-0014", "QIN-LSC-0049",
             "QIN-LSC-0064", "QIN-LSC-0088")
    assert [fold_of(p) for p in names] == [3, 1, 2, 1, 0, 3]
