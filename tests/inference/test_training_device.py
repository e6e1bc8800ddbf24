"""Training placement (``training.device``, ``lungcad train --device/--amp``): the device choice,
CPU checkpoints that load with ``weights_only=True``, and CPU runs that stay deterministic (AMP
asked for on the CPU changes nothing). The CUDA case runs only where torch sees a GPU."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from lungcad.imaging import Geometry
from lungcad_inference.commands import _train_device
from lungcad_inference.data.studies import Study
from lungcad_inference.data.vois import Voi
from lungcad_inference.training.detector_data import InsertionConfig
from lungcad_inference.training.device import amp_enabled, cpu_copy, resolve_device
from lungcad_inference.training.malignancy_data import build_set
from lungcad_inference.training.train_detector import DetectorTrainConfig, train_detector
from lungcad_inference.training.train_malignancy import (
    MalignancyTrainConfig,
    predict_malignancy,
    train_malignancy,
)

CUDA = torch.cuda.is_available()


def _voi(rng: np.random.Generator, i: int) -> Voi:
    malignant = i % 2 == 1
    d = rng.uniform(12, 20) if malignant else rng.uniform(4, 9)
    r = np.sqrt(((np.indices((30, 30, 30)) - 14.5) ** 2).sum(0))
    mask = (r <= d / 2).astype(np.float32)
    hu = np.where(mask > 0, 40, -850) + rng.normal(0, 20, mask.shape)
    return Voi(f"P{i}", "1", d, 5 if malignant else 1, int(malignant), hu.astype(np.int16), mask)


def _study() -> Study:
    """A 64^3 chest-like volume: soft tissue, two lungs at -850 HU crossed by vessels."""
    hu = np.full((64, 64, 64), 40, np.int16)
    lungs = np.zeros(hu.shape, np.uint8)
    lungs[8:56, 8:56, 6:30], lungs[8:56, 8:56, 34:58] = 1, 2
    hu[lungs > 0] = -850
    hu[:, 30:32, 10:56] = 60  # a vessel through both lungs
    return Study("synthetic", hu, lungs, Geometry((64, 64, 64), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)),
                 [])


def _small_detector(**kw: object) -> DetectorTrainConfig:
    return dataclasses.replace(DetectorTrainConfig(), channels=(4, 8, 8, 8), patch=32, batch=2,
                               iterations=3, warmup=1, checkpoint_every=2, threads=1,
                               insertion=InsertionConfig(crop=48), **kw)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k].to(sa[k].device)) for k in sa)


def test_auto_picks_cuda_only_when_there_is_one() -> None:
    assert resolve_device("auto") == ("cuda" if CUDA else "cpu")
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="device must be one of"):
        resolve_device("tpu")
    assert amp_enabled("cuda", True) and not amp_enabled("cpu", True)
    assert not amp_enabled("cuda", False)


@pytest.mark.skipif(CUDA, reason="needs a machine without a CUDA GPU")
def test_cuda_without_a_gpu_is_refused_with_a_reason(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device("cuda")
    assert _train_device(argparse.Namespace(device="cuda", amp=False)) is None
    assert "no CUDA GPU" in capsys.readouterr().err


def test_amp_on_the_cpu_is_switched_off_and_said(capsys: pytest.CaptureFixture[str]) -> None:
    assert _train_device(argparse.Namespace(device="cpu", amp=True)) == \
        {"device": "cpu", "amp": False}
    assert "--amp ignored on the CPU" in capsys.readouterr().err


def test_cpu_copy_detaches_and_copies_nested_tensors() -> None:
    w = torch.ones(3, requires_grad=True)
    state = {"a": w, "b": [torch.zeros(2), 5, ("x", torch.ones(1))], "lr": 0.1}
    out = cpu_copy(state)
    assert torch.equal(out["a"], w) and out["a"] is not w and not out["a"].requires_grad
    assert out["b"][1] == 5 and isinstance(out["b"][2], tuple) and out["lr"] == 0.1
    assert out["b"][0].device.type == "cpu"


def test_malignancy_on_the_cpu_is_deterministic_and_amp_changes_nothing() -> None:
    rng = np.random.default_rng(0)
    data = build_set([_voi(rng, i) for i in range(24)])
    config = dataclasses.replace(MalignancyTrainConfig(), channels=(4, 8, 8), epochs=2,
                                 batch=8, threads=1)
    a = train_malignancy(data, config, progress=False)
    b = train_malignancy(data, dataclasses.replace(config, amp=True), progress=False)
    assert _same_weights(a, b)
    assert np.array_equal(predict_malignancy(a, data), predict_malignancy(b, data))


def test_detector_checkpoint_is_cpu_and_loads_with_weights_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    vois = [_voi(rng, i) for i in range(4)]
    a, summary = train_detector([_study()], vois, _small_detector(), tmp_path / "a",
                                progress=False)
    b, _ = train_detector([_study()], vois, _small_detector(amp=True), tmp_path / "b",
                          progress=False)
    assert _same_weights(a, b)  # deterministic on the CPU; AMP is CUDA-only
    ckpt = torch.load(tmp_path / "a" / "detector_checkpoint.pt", map_location="cpu",
                      weights_only=True)
    assert ckpt["step"] == 3 and summary["config"]["device"] == "cpu"
    assert all(t.device.type == "cpu" for t in ckpt["state_dict"].values())
    assert all(torch.equal(ckpt["state_dict"][k], v) for k, v in a.state_dict().items())


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_training_on_cuda_with_amp_writes_a_checkpoint_that_loads_on_the_cpu(
        tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    model, _ = train_detector([_study()], [_voi(rng, i) for i in range(4)],
                              _small_detector(device="cuda", amp=True), tmp_path,
                              progress=False)
    assert next(model.parameters()).device.type == "cuda"
    ckpt = torch.load(tmp_path / "detector_checkpoint.pt", map_location="cpu", weights_only=True)
    assert all(t.device.type == "cpu" for t in ckpt["state_dict"].values())
    data = build_set([_voi(rng, i) for i in range(16)])
    mal = train_malignancy(data, dataclasses.replace(
        MalignancyTrainConfig(), channels=(4, 8, 8), epochs=1, batch=8, device="cuda", amp=True),
        progress=False)
    probs = predict_malignancy(mal, data)
    assert probs.shape == (16,) and np.all((probs >= 0) & (probs <= 1))
