"""Pieces every training loop shares: the warm-up + cosine learning rate, binary
cross-entropy plus soft Dice, and checkpoints written atomically with CPU tensors (a checkpoint
written on a GPU loads anywhere)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def warmup_cosine(step: int, lr: float, warmup: int, iterations: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 2 % of ``lr``; a Python
    float, so checkpoints (optimizer param groups) load with ``weights_only=True``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, iterations - warmup)
    return float(lr * (0.02 + 0.98 * 0.5 * (1 + np.cos(np.pi * t))))


def bce_dice(logits: Any, target: Any, weight: Any = None) -> Any:
    """Binary cross-entropy (per-voxel ``weight`` when given) plus (1 - soft Dice), averaged
    over the batch."""
    import torch
    from torch.nn import functional as F

    bce = F.binary_cross_entropy_with_logits(logits, target, weight=weight)
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    dice = (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)
    return bce + (1 - dice).mean()


def write_checkpoint(path: Path, model: Any, optimizer: Any, step: int, **extra: Any) -> None:
    """``path`` replaced atomically by the model and optimizer states (CPU copies), ``step``
    and ``extra`` (history, RNG state, ...)."""
    import torch

    from lungcad_inference.training.device import cpu_copy

    tmp = path.with_suffix(".tmp")
    torch.save({"state_dict": cpu_copy(model.state_dict()),
                "optimizer": cpu_copy(optimizer.state_dict()), "step": step, **extra}, tmp)
    tmp.replace(path)
