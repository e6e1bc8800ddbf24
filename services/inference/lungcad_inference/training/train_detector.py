"""Detector training loop: AdamW, linear warm-up then cosine learning rate, progress bar,
periodic checkpoints (CPU tensors), deterministic seeds; on ``config.device`` (batches are
built on the CPU and moved there), with optional mixed precision on CUDA."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lungcad_inference.data.studies import Study
from lungcad_inference.data.vois import Voi
from lungcad_inference.intensity import normalise_hu
from lungcad_inference.training.augment import AugmentConfig
from lungcad_inference.training.detector_data import InsertionConfig
from lungcad_inference.training.loop import warmup_cosine, write_checkpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectorTrainConfig:
    channels: tuple[int, int, int, int] = (16, 32, 64, 96)
    dropout: float = 0.1
    patch: int = 64
    batch: int = 8
    iterations: int = 1200
    cv_iterations: int = 450  # each leave-one-study-out fold model
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 50
    seed: int = 0
    threads: int = 2
    checkpoint_every: int = 250
    device: str = "cpu"  # "cpu" or "cuda" (resolved by the CLI from --device)
    amp: bool = False  # float16 autocast + GradScaler, CUDA only
    insertion: InsertionConfig = field(default_factory=InsertionConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def network_kwargs(self) -> dict[str, Any]:
        return {"spatial_dims": 3, "in_channels": 1, "out_channels": 5,
                "channels": list(self.channels), "dropout": self.dropout}


CONFIGS = {
    # 2-core CPU: 4 x 450 leave-one-study-out iterations (+ 1200 for a final model on all
    # studies unless one fold model is shipped), ~35-60 min on a shared 2-core machine
    "small": DetectorTrainConfig(),
    # documented for a GPU: wider, larger patches, longer
    "large": DetectorTrainConfig(channels=(24, 48, 96, 128), patch=96, batch=16,
                                 iterations=20000, cv_iterations=10000, lr=1e-3, threads=8,
                                 insertion=InsertionConfig(crop=160, max_lesions=3)),
}


def lr_at(step: int, config: DetectorTrainConfig) -> float:
    return warmup_cosine(step, config.lr, config.warmup, config.iterations)


def make_batch(rng: np.random.Generator, prepared: list[Any], bank: Any,
               config: DetectorTrainConfig) -> tuple[Any, dict[str, Any]]:
    """One augmented batch: windowed input ``(B, 1, P, P, P)`` and stacked targets."""
    import torch

    from lungcad_inference.training.augment import jitter_intensity, map_points, random_affine, warp
    from lungcad_inference.training.detector_data import draw_sample
    from lungcad_inference.training.detector_targets import build_targets

    cubes, mats, targets = [], [], []
    crop, patch = config.insertion.crop, config.patch
    for _ in range(config.batch):
        study = prepared[int(rng.integers(len(prepared)))]
        sample = draw_sample(rng, study, bank, config.insertion)
        m, s = random_affine(rng, config.augment)
        cubes.append(normalise_hu(sample.hu))
        mats.append(m)
        centres = map_points(np.array(sample.centres).reshape(-1, 3), m, crop, patch)
        diameters = np.array(sample.diameters) / s
        ignore = [(map_points(c, m, crop, patch)[0], r / s) for c, r in sample.ignore]
        targets.append(build_targets(patch, centres, diameters, ignore))
    x = warp(torch.from_numpy(np.stack(cubes)[:, None]), np.stack(mats), patch)
    x = jitter_intensity(x, rng, config.augment)
    t = {k: torch.from_numpy(np.stack([d[k] for d in targets])) for k in targets[0]}
    return x, t


def train_detector(studies: list[Study], vois: list[Voi], config: DetectorTrainConfig,
                   out_dir: Path, progress: bool = True,
                   hard_negatives: dict[str, np.ndarray] | None = None,
                   resume: bool = True) -> tuple[Any, dict[str, Any]]:
    """Train on lesions inserted into ``studies``; returns the model (in eval mode, on
    ``config.device``) and a history dict. ``hard_negatives``: per study name, voxel centres
    where a detector fired on no lesion (negative crops go there). Resumes from
    ``out_dir``'s checkpoint when one exists (weights, optimizer, step, history, data
    stream)."""
    import torch
    from tqdm import tqdm

    from lungcad_inference.networks import NoduleDetector
    from lungcad_inference.training.detector_data import LesionBank, prepare_study
    from lungcad_inference.training.detector_targets import detector_loss
    from lungcad_inference.training.device import (
        amp_enabled,
        autocast,
        grad_scaler,
        to_device,
    )

    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    t0 = time.perf_counter()
    hard_negatives = hard_negatives or {}
    prepared = [prepare_study(s, rng, hard_negatives=hard_negatives.get(s.name))
                for s in studies]
    bank = LesionBank(vois, config.insertion)
    log.info("detector data ready", extra={"studies": [s.name for s in studies],
                                           "real_lesions": len(bank.real),
                                           "prep_s": round(time.perf_counter() - t0, 1)})
    model = NoduleDetector(**config.network_kwargs()).to(config.device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    amp = amp_enabled(config.device, config.amp)
    scaler = grad_scaler(amp)
    history: dict[str, list[float]] = {"loss": [], "focal": [], "size": [], "offset": []}
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = out_dir / "detector_checkpoint.pt"
    start = 0
    if resume and ckpt.exists():
        blob = torch.load(ckpt, map_location="cpu", weights_only=False)
        model.load_state_dict(blob["state_dict"])
        opt.load_state_dict(blob["optimizer"])
        scaler.load_state_dict(blob.get("scaler", {}) or scaler.state_dict())
        start = int(blob["step"])
        history = blob.get("history", history)
        if "rng" in blob:
            rng.bit_generator.state = blob["rng"]
        log.info("detector resumed", extra={"step": start, "checkpoint": str(ckpt)})
    bar = tqdm(range(start, config.iterations), desc="detector", disable=not progress,
               mininterval=5, initial=start, total=config.iterations)
    model.train()
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, config)
        x, t = make_batch(rng, prepared, bank, config)
        x, t = x.to(config.device, non_blocking=True), to_device(t, config.device)
        with autocast(config.device, amp):
            out = model(x)
        loss, parts = detector_loss(out.float(), t)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        scaler.step(opt)
        scaler.update()
        history["loss"].append(float(loss.detach()))
        for k, v in parts.items():
            history[k].append(v)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(history['loss'][-50:]):.3f}",
                            lr=f"{g['lr']:.1e}")
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.iterations:
            write_checkpoint(ckpt, model, opt, step + 1, scaler=scaler.state_dict(),
                             history=history, rng=rng.bit_generator.state,
                             network=config.network_kwargs())
    model.eval()
    summary = {"wall_s": round(time.perf_counter() - t0, 1), "config": asdict(config),
               "final_loss": float(np.mean(history["loss"][-100:])),
               "train_studies": [s.name for s in studies], "real_lesions": len(bank.real)}
    (out_dir / "detector_history.json").write_text(json.dumps(
        {"summary": summary, "history": history}, default=str))
    return model, summary
