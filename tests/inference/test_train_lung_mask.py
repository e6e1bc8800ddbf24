"""Lung-mask training pieces on a synthetic chest: pasted masses darken nothing and keep the
target (the lung they fill stays lung), folds are fixed by name, a short fit checkpoints and
resumes, and a held-out score reports each lesion's share inside the mask."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from lungcad.synthetic import default_geometry, make_chest_ct
from lungcad_inference.training.lung_mask_data import (
    LowStudy,
    MassSampleConfig,
    coarsen,
    draw_sample,
)
from lungcad_inference.training.train_lung_mask import (
    CHECKPOINT,
    LungMaskTrainConfig,
    fold_of,
    score_study,
    train_lung_mask,
)


@pytest.fixture(scope="module")
def study() -> LowStudy:
    ct = make_chest_ct(default_geometry((60, 150, 150), (2.0, 2.0, 2.0)), nodules=[])
    lesions = np.zeros(ct.hu.shape, bool)
    lesions[28:33, 60:66, 30:36] = True  # a "reference lesion" inside the right lung
    body = ct.hu > -500
    return LowStudy("SYN", ct.hu.astype(np.int16), ct.lungs.astype(np.uint8), body, lesions,
                    ct.geometry)


def test_pasted_masses_are_dense_inside_the_lung_and_keep_the_target(study: LowStudy) -> None:
    coarse = coarsen(study)
    rng = np.random.default_rng(0)
    cfg = MassSampleConfig(paste_share=1.0, crop=64)
    dense_lung = 0
    for _ in range(20):
        hu, target, weight = draw_sample(rng, coarse, cfg)
        assert hu.shape == (3, 64, 64) and target.shape == weight.shape == (64, 64)
        pasted = weight > 1
        # a pasted mass is denser than aerated lung, and where it lies the target is lung
        dense_lung += int(((hu[1] > -500) & (target > 0)).sum())
        assert (target[pasted] == 1).all()
    assert dense_lung > 50


def test_no_mass_sample_targets_exactly_the_classical_lungs(study: LowStudy) -> None:
    coarse = coarsen(study)
    rng = np.random.default_rng(1)
    hu, target, weight = draw_sample(rng, coarse, MassSampleConfig(paste_share=0.0, crop=96))
    lung_px = target.sum()
    assert lung_px > 0
    assert ((hu[1] < -600) & (target > 0)).sum() > 0.8 * lung_px  # aerated
    assert (weight[target == 0] == 1).all()


def test_folds_are_every_third_study_by_name() -> None:
    names = ["B", "A", "F", "C", "E", "D"]
    assert fold_of(names, 3) == {"A": 0, "B": 1, "C": 2, "D": 0, "E": 1, "F": 2}


def test_a_short_fit_learns_checkpoints_and_resumes(study: LowStudy, tmp_path: Path) -> None:
    cfg = dataclasses.replace(LungMaskTrainConfig(), widths=(4, 8, 8), batch=2, iterations=30,
                              checkpoint_every=10, sample=MassSampleConfig(crop=48), threads=1)
    coarse = coarsen(study)
    model, summary = train_lung_mask([coarse], cfg, tmp_path, progress=False)
    assert (tmp_path / CHECKPOINT).exists() and (tmp_path / "lung_mask_loss.png").exists()
    import json

    loss = json.loads((tmp_path / "lung_mask_history.json").read_text())["history"]["loss"]
    assert len(loss) == 30 and np.mean(loss[-10:]) < np.mean(loss[:10])
    more = dataclasses.replace(cfg, iterations=35)
    train_lung_mask([coarse], more, tmp_path, progress=False)
    loss = json.loads((tmp_path / "lung_mask_history.json").read_text())["history"]["loss"]
    assert len(loss) == 35  # resumed at 30, not restarted
    scored = score_study(model, study)
    assert [les["inside_classical"] for les in scored["lesions"]] == [1.0]
    assert scored["lesions"][0]["inside_refined"] == 1.0  # additions never remove
    assert scored["added_percent"] >= 0
