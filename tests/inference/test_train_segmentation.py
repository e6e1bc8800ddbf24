"""Segmentation training pieces: VOI placement (label where the nodule is, nothing else),
size classes and subsolid share, and a short fit that learns, checkpoints and resumes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from lungcad_inference.data.vois import Voi
from lungcad_inference.training.segmentation_data import (
    Background,
    SegSampleConfig,
    draw_seg_sample,
    place_voi,
)
from lungcad_inference.training.train_segmentation import (
    CHECKPOINT,
    SegTrainConfig,
    size_classes,
    train_segmentation,
)


def _voi(i: int, diameter: float, texture: int = 5, hu_in: float = 40.0) -> Voi:
    shape = (int(diameter) + 4, int(diameter) + 12, int(diameter) + 12)
    zz, yy, xx = np.indices(shape)
    c = (np.array(shape) - 1) / 2
    mask = ((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= (diameter / 2) ** 2)
    hu = np.where(mask, hu_in, -850).astype(np.int16)
    return Voi(f"P{i}", "1", diameter, 3, None, hu, mask.astype(np.float32), texture)


def _background() -> Background:
    rng = np.random.default_rng(0)
    hu = (-850 + rng.normal(0, 20, (60, 60, 60))).astype(np.int16)
    hu[:, :, 50:] = 40  # chest wall
    return Background(hu, np.argwhere(np.ones((60, 60, 60), bool))[::97])


@pytest.mark.parametrize("with_host", [False, True])
def test_placed_voi_labels_the_nodule_only(with_host: bool) -> None:
    voi = _voi(0, 8.0)
    host = np.full((32, 32, 32), -850.0, np.float32) if with_host else None
    hu, label = place_voi(voi, 32, np.array([2.0, 0.0, -1.0]), host, 3.0)
    com = np.argwhere(label >= 0.5).mean(0)
    np.testing.assert_allclose(com, np.array([16, 16, 16]) - [2, 0, -1], atol=0.6)
    assert label.sum() == pytest.approx(voi.mask.sum())
    assert hu[label >= 0.5].mean() > 0  # the nodule's own HU, kept whole when blended
    assert hu[0, 0, 0] == (-850.0 if with_host else -1000.0)


def test_samples_are_inputs_and_targets_of_one_size() -> None:
    rng = np.random.default_rng(1)
    for bg in ([], [_background()]):
        x, t = draw_seg_sample(rng, _voi(0, 10.0), bg, SegSampleConfig(size=40))
        assert x.shape == (2, 40, 40, 40) and t.shape == (40, 40, 40)
        assert x[1, 20, 20, 20] == pytest.approx(1.0)  # the seed at the centre voxel
        assert 300 < (t >= 0.5).sum() < 700


def test_size_classes_split_small_and_large_and_favour_subsolid() -> None:
    vois = [_voi(i, 5.0) for i in range(8)] + [_voi(8, 5.0, texture=1)] + \
        [_voi(9 + i, 14.0) for i in range(3)]
    classes = size_classes(vois, SegTrainConfig(large_share=0.3, subsolid_share=0.4))
    (share_s, small, w_s), (share_l, large, w_l) = classes
    assert share_s == pytest.approx(0.7) and share_l == pytest.approx(0.3)
    assert set(small) == set(range(9)) and set(large) == {9, 10, 11}
    assert w_s[list(small).index(8)] == pytest.approx(0.6 / 9 + 0.4)
    assert w_l.sum() == pytest.approx(1.0)


def test_short_fit_learns_checkpoints_and_resumes(tmp_path: Path) -> None:
    vois = [_voi(i, d) for i, d in enumerate([4, 6, 8, 10, 12, 16] * 2)]
    config = dataclasses.replace(SegTrainConfig(), channels=(4, 8, 8, 8), batch=4,
                                 iterations=40, checkpoint_every=20, warmup=5, threads=1,
                                 lr=1e-2)
    model, summary = train_segmentation(vois, [_background()], config, tmp_path,
                                        progress=False)
    assert (tmp_path / CHECKPOINT).exists()
    import json

    loss = json.loads((tmp_path / "segmentation_history.json").read_text())["history"]["loss"]
    assert len(loss) == 40 and np.mean(loss[-10:]) < 0.9 * np.mean(loss[:5])
    longer = dataclasses.replace(config, iterations=50)
    _, resumed = train_segmentation(vois, [_background()], longer, tmp_path, progress=False)
    loss2 = json.loads((tmp_path / "segmentation_history.json").read_text())["history"]["loss"]
    assert len(loss2) == 50 and loss2[:40] == loss  # continued, not restarted


def test_fold_claims_share_a_run_between_processes(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from lungcad_inference.training.experiments import LOCK, claim

    assert claim(tmp_path / "fold0") and claim(tmp_path / "fold0")  # ours, again
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / "fold1").mkdir()
        (tmp_path / "fold1" / LOCK).write_text(str(other.pid))
        assert not claim(tmp_path / "fold1")  # a live process holds it
    finally:
        other.kill()
        other.wait()
    assert claim(tmp_path / "fold1")  # its holder died: taken over
    assert (tmp_path / "fold1" / LOCK).read_text() == str(os.getpid())
