"""Segmentation training loop: AdamW with warm-up and cosine decay, BCE + soft Dice, periodic
checkpoints (CPU tensors) and ``resume``; deterministic for a seed and thread count on the CPU.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lungcad_inference.data.vois import Voi
from lungcad_inference.training.loop import bce_dice, warmup_cosine, write_checkpoint
from lungcad_inference.training.segmentation_data import Background, SegSampleConfig

log = logging.getLogger(__name__)
CHECKPOINT = "segmentation_checkpoint.pt"


@dataclass(frozen=True)
class SegTrainConfig:
    channels: tuple[int, int, int, int] = (8, 16, 32, 64)
    batch: int = 4
    iterations: int = 1000
    cv_iterations: int = 1000  # each cross-validation fold model
    max_cube: int = 64  # training cubes (larger only at serving, for very large lesions)
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup: int = 50
    seed: int = 0
    threads: int = 2
    checkpoint_every: int = 100
    large_share: float = 0.35  # share of batches of nodules >= 10 mm (rare, matter most)
    large_mm: float = 10.0
    subsolid_share: float = 0.2  # within a batch's size class: ground-glass / part-solid draws
    device: str = "cpu"
    sample: SegSampleConfig = field(default_factory=SegSampleConfig)

    def network_kwargs(self) -> dict[str, Any]:
        return {"spatial_dims": 3, "in_channels": 2, "out_channels": 1,
                "channels": list(self.channels)}


CONFIGS = {"small": SegTrainConfig(),
           "large": SegTrainConfig(channels=(16, 32, 64, 128), batch=16, iterations=6000,
                                   cv_iterations=4000, lr=2e-3, threads=8)}


def lr_at(step: int, config: SegTrainConfig) -> float:
    return warmup_cosine(step, config.lr, config.warmup, config.iterations)


def size_classes(vois: list[Voi], config: SegTrainConfig) -> list[tuple[float, np.ndarray,
                                                                       np.ndarray]]:
    """``[(share of batches, VOI indices, draw probabilities)]`` for the small and the large
    nodules (a batch is drawn from one class, so small nodules train on small cubes); within a
    class, ground-glass and part-solid nodules (texture 1-3) get ``subsolid_share``."""
    large = np.array([v.diameter_mm >= config.large_mm for v in vois])
    sub = np.array([v.texture_rating is not None and v.texture_rating <= 3 for v in vois])
    classes = []
    for share, sel in ((1 - config.large_share, ~large), (config.large_share, large)):
        idx = np.nonzero(sel)[0]
        if idx.size == 0:
            continue
        w = np.full(idx.size, 1.0 / idx.size) * (1 - config.subsolid_share)
        s = sub[idx]
        w = w + (s * config.subsolid_share / s.sum() if s.any() else config.subsolid_share
                 / idx.size)
        classes.append((share, idx, w / w.sum()))
    total = sum(c[0] for c in classes)
    return [(c[0] / total, c[1], c[2]) for c in classes]


def train_segmentation(vois: list[Voi], backgrounds: list[Background], config: SegTrainConfig,
                       out_dir: Path, progress: bool = True, resume: bool = True
                       ) -> tuple[Any, dict[str, Any]]:
    """Train on ``vois``; resumes from ``out_dir``'s checkpoint when there is one. Returns the
    model in eval mode and a summary."""
    import torch
    from tqdm import tqdm

    from lungcad_inference.networks import NoduleSegNet
    from lungcad_inference.segmentation import cube_size
    from lungcad_inference.training.segmentation_data import draw_seg_sample

    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    # channels-last 3-D layout: the same arithmetic, about 1.7x faster convolutions on the CPU
    fast = torch.channels_last_3d
    model = NoduleSegNet(**config.network_kwargs()).to(config.device, memory_format=fast)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history: dict[str, list[float]] = {"loss": []}
    start = 0
    ckpt = out_dir / CHECKPOINT
    if resume and ckpt.exists():
        blob = torch.load(ckpt, map_location="cpu", weights_only=False)
        model.load_state_dict(blob["state_dict"])
        opt.load_state_dict(blob["optimizer"])
        start = int(blob["step"])
        history = blob.get("history", history)
        rng.bit_generator.state = blob["rng"]
        log.info("segmentation resumed", extra={"step": start})
    classes = size_classes(vois, config)
    t0 = time.perf_counter()
    bar = tqdm(range(start, config.iterations), desc="segmentation", disable=not progress,
               mininterval=10, initial=start, total=config.iterations)
    model.train()
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, config)
        _, idx, w = classes[int(rng.choice(len(classes), p=[c[0] for c in classes]))]
        picks = [vois[int(i)] for i in rng.choice(idx, config.batch, p=w)]
        # a cube at least as large as the nodules need, often larger, so the network does
        # not read the nodule's size off the cube's
        size = min(cube_size(max(v.diameter_mm for v in picks)) + 8 * int(rng.integers(0, 3)),
                   config.max_cube)
        sample = dataclasses.replace(config.sample, size=size)
        pairs = [draw_seg_sample(rng, v, backgrounds, sample) for v in picks]
        x = torch.from_numpy(np.stack([p[0] for p in pairs])).to(config.device,
                                                                 memory_format=fast)
        t = torch.from_numpy(np.stack([p[1] for p in pairs])[:, None]).to(config.device,
                                                                          memory_format=fast)
        loss = bce_dice(model(x), t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        history["loss"].append(float(loss.detach()))
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(history['loss'][-50:]):.3f}")
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.iterations:
            write_checkpoint(ckpt, model, opt, step + 1, history=history,
                             rng=rng.bit_generator.state, network=config.network_kwargs())
    model.eval()
    summary = {"wall_s_this_run": round(time.perf_counter() - t0, 1), "config": asdict(config),
               "final_loss": float(np.mean(history["loss"][-100:])) if history["loss"] else None,
               "training_vois": len(vois)}
    (out_dir / "segmentation_history.json").write_text(json.dumps(
        {"summary": summary, "history": history}, default=str))
    return model, summary
