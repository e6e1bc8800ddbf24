"""Detector training pieces: lesion simulation and pasting, augmentation geometry, targets and
loss, one optimisation step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lungcad_inference.synthesis import KINDS, paste, simulate_lesion
from lungcad_inference.training.augment import AugmentConfig, map_points, random_affine, warp
from lungcad_inference.training.detector_targets import build_targets, detector_loss


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", ["round", "lobulated", "spiculated"])
def test_simulated_lesions_have_their_size_and_density(kind: str, shape: str) -> None:
    les = simulate_lesion(np.random.default_rng(1), 12.0, kind, shape)
    d = (6 * (les.alpha >= 0.5).sum() / np.pi) ** (1 / 3)
    assert 9.0 < d < 18.0
    core = les.hu[les.alpha >= 0.99].mean()
    assert (core > -100) if kind == "solid" else (core < -150)


def test_paste_keeps_brighter_host_structures() -> None:
    host = np.full((40, 40, 40), -850.0, np.float32)
    host[:, 20, :] = 100.0  # a "vessel" through the lesion
    les = simulate_lesion(np.random.default_rng(0), 10.0, "ground_glass")
    paste(host, les, np.array([20, 20, 20]))
    assert host[20, 20, 20] == pytest.approx(100.0, abs=1.0)
    assert -750 < host[20, 17, 20] < -300


def test_warp_and_map_points_agree() -> None:
    rng = np.random.default_rng(3)
    cube = np.full((1, 1, 48, 48, 48), -1.0, np.float32)
    point = np.array([30.0, 14.0, 20.0])
    zz, yy, xx = np.indices((48, 48, 48))
    cube[0, 0][((zz - point[0]) ** 2 + (yy - point[1]) ** 2 + (xx - point[2]) ** 2) <= 9] = 1.0
    m, _ = random_affine(rng, AugmentConfig())
    out = warp(torch.from_numpy(cube), m[None], 40)[0, 0].numpy()
    mapped = map_points(point, m, 48, 40)[0]
    com = np.argwhere(out > 0).mean(axis=0)
    np.testing.assert_allclose(com, mapped, atol=1.0)


def test_targets_and_loss_prefer_the_right_answer() -> None:
    t = build_targets(64, np.array([[30.0, 33.0, 17.0]]), np.array([10.0]),
                      [(np.array([50.0, 50.0, 50.0]), 6.0)])
    k = (8, 8, 4)
    assert t["heat"][k] == 1.0 and t["reg_mask"].sum() == 1
    assert t["weight"][12, 12, 12] == 0.0
    np.testing.assert_allclose(t["reg"][1:, 8, 8, 4], [-0.5, 0.25, 0.25])
    tt = {n: torch.from_numpy(v[None]) for n, v in t.items()}
    good = torch.full((1, 5, 16, 16, 16), -8.0)
    good[0, 0, 8, 8, 4] = 8.0
    good[0, 1:, 8, 8, 4] = torch.tensor([np.log(10.0), -0.5, 0.25, 0.25])
    bad = good.clone()
    bad[0, 0, 8, 8, 4] = -8.0
    assert detector_loss(good, tt)[0] < detector_loss(bad, tt)[0]


def test_one_training_step_reduces_loss_on_a_fixed_batch() -> None:
    from lungcad_inference.networks import NoduleDetector

    torch.manual_seed(0)
    net = NoduleDetector(channels=(4, 8, 8, 8))
    x = torch.randn(2, 1, 32, 32, 32)
    t = build_targets(32, np.array([[16.0, 16.0, 16.0]]), np.array([8.0]), [])
    tt = {n: torch.from_numpy(np.stack([v, v])) for n, v in t.items()}
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    first = None
    for _ in range(10):
        loss, _ = detector_loss(net(x), tt)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < first


def _study():  # type: ignore[no-untyped-def]
    from lungcad.imaging import Geometry
    from lungcad_inference.data.studies import Study

    rng = np.random.default_rng(0)
    hu = (-850 + rng.normal(0, 20, (60, 80, 120))).astype(np.int16)
    lungs = np.zeros(hu.shape, np.uint8)
    lungs[5:55, 10:70, 10:55] = 1  # right lung: low x
    lungs[5:55, 10:70, 65:110] = 2
    hu[lungs == 0] = 40
    return Study("S", hu, lungs, Geometry(hu.shape, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)), [])


def test_mediastinal_positions_face_the_midline_and_hard_negatives_centre_crops() -> None:
    from lungcad_inference.training.detector_data import (
        InsertionConfig,
        LesionBank,
        draw_sample,
        prepare_study,
    )

    rng = np.random.default_rng(0)
    hard = np.array([[30.0, 40.0, 30.0]])
    prepared = prepare_study(_study(), rng, n=5000, hard_negatives=hard)
    med = prepared.mediastinum
    assert len(med) > 100
    assert np.all(np.abs(med[:, 2] - 60) < 60 - 32)  # nearer the midline than the centres
    config = InsertionConfig(crop=48, p_lesion_patch=0.0, p_anywhere_negative=0.0,
                             p_hard_negative=1.0)
    sample = draw_sample(rng, prepared, LesionBank([], config), config)
    assert sample.centres == []
    assert sample.hu.shape == (48, 48, 48)


def test_subsolid_real_nodules_are_drawn_at_their_share() -> None:
    from lungcad_inference.data.vois import Voi
    from lungcad_inference.training.detector_data import InsertionConfig, LesionBank

    def voi(i: int, texture: int) -> Voi:
        mask = np.zeros((10, 10, 10), np.float32)
        mask[3:7, 3:7, 3:7] = 1
        return Voi(f"P{i}", "1", 5.0, 3, None, np.full((10, 10, 10), i, np.int16), mask,
                   texture)

    vois = [voi(i, 5) for i in range(18)] + [voi(100, 1), voi(101, 3)]
    bank = LesionBank(vois, InsertionConfig(p_real=1.0, p_real_subsolid=0.5))
    rng = np.random.default_rng(0)
    draws = [bank.draw(rng) for _ in range(400)]
    sub = np.mean([d.hu.max() >= 100 for d in draws])
    assert 0.45 < sub < 0.62  # 0.5 + 0.5 * 2/20 expected, against 0.1 without oversampling
