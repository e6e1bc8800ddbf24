"""Malignancy training pieces: patient-level folds, the size baseline, a short CNN fit on
synthetic nodules where size and density carry the label."""

from __future__ import annotations

import dataclasses

import numpy as np

from lungcad_inference import metrics as M
from lungcad_inference.data.vois import Voi
from lungcad_inference.training.malignancy_data import build_set, patient_folds
from lungcad_inference.training.train_malignancy import (
    MalignancyTrainConfig,
    fit_logistic,
    predict_logistic,
    predict_malignancy,
    train_malignancy,
)


def test_patient_folds_never_split_a_patient() -> None:
    patients = np.array([f"P{i // 3}" for i in range(90)])
    folds = patient_folds(patients, 5, seed=1)
    for p in np.unique(patients):
        assert len(set(folds[patients == p])) == 1
    assert set(folds) == set(range(5))


def test_logistic_size_baseline_learns_a_monotone_rule() -> None:
    rng = np.random.default_rng(0)
    d = rng.uniform(3, 30, 400)
    y = (d + rng.normal(0, 4, 400) > 15).astype(float)
    w = fit_logistic(np.log(d)[:, None], y)
    p = predict_logistic(w, np.log(d)[:, None])
    assert w[1] > 0 and M.auc(y, p) > 0.85


def _voi(rng: np.random.Generator, i: int, malignant: bool) -> Voi:
    d = rng.uniform(12, 20) if malignant else rng.uniform(4, 9)
    zz, yy, xx = np.indices((30, 30, 30))
    r = np.sqrt((zz - 14.5) ** 2 + (yy - 14.5) ** 2 + (xx - 14.5) ** 2)
    mask = (r <= d / 2).astype(np.float32)
    hu = np.where(mask > 0, 40, -850) + rng.normal(0, 20, mask.shape)
    return Voi(f"P{i}", "1", d, 5 if malignant else 1, int(malignant), hu.astype(np.int16), mask)


def test_cnn_learns_synthetic_malignancy() -> None:
    rng = np.random.default_rng(0)
    vois = [_voi(rng, i, i % 2 == 1) for i in range(48)]
    data = build_set(vois)
    assert np.all(np.abs(data.seg_diameter_mm - data.mask_diameter_mm) < 2.0)
    config = dataclasses.replace(MalignancyTrainConfig(), channels=(4, 8, 8), epochs=6, batch=16,
                                 lr=3e-3, threads=1)
    model = train_malignancy(data, config, progress=False)
    probs = predict_malignancy(model, data)
    assert probs.shape == (48,) and M.auc(data.labels, probs) > 0.8
