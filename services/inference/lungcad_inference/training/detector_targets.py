"""CenterNet-style targets and loss for :class:`~lungcad_inference.networks.NoduleDetector`.

On the stride-4 output grid, each lesion gets a Gaussian peak (exactly 1 at its nearest cell,
sigma growing with its diameter), a log-diameter target and a sub-cell offset target at that
cell. Cells inside ignore spheres (the study's own reference lesions) carry no loss.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

STRIDE = 4


def build_targets(size: int, centres: np.ndarray, diameters: np.ndarray,
                  ignore: list[tuple[np.ndarray, float]]) -> dict[str, np.ndarray]:
    """Targets on the ``(size / STRIDE)^3`` grid for one patch (points in patch voxels)."""
    g = size // STRIDE
    axis = np.arange(g, dtype=np.float32)
    zz, yy, xx = np.meshgrid(axis, axis, axis, indexing="ij")
    heat = np.zeros((g, g, g), np.float32)
    weight = np.ones((g, g, g), np.float32)
    reg = np.zeros((4, g, g, g), np.float32)  # log diameter, offset z, y, x
    reg_mask = np.zeros((g, g, g), np.float32)
    for c, d in zip(np.asarray(centres).reshape(-1, 3), np.asarray(diameters).ravel(),
                    strict=True):
        cell = c / STRIDE
        k = np.rint(cell).astype(int)
        if np.any(k < 0) or np.any(k >= g):
            continue
        sigma = max(0.6, d / STRIDE / 4.0)
        r2 = (zz - cell[0]) ** 2 + (yy - cell[1]) ** 2 + (xx - cell[2]) ** 2
        heat = np.maximum(heat, np.exp(-r2 / (2 * sigma**2)))
        heat[tuple(k)] = 1.0
        reg[:, k[0], k[1], k[2]] = [np.log(d), *(cell - k)]
        reg_mask[tuple(k)] = 1.0
    for c, radius in ignore:
        cell = np.asarray(c) / STRIDE
        r2 = (zz - cell[0]) ** 2 + (yy - cell[1]) ** 2 + (xx - cell[2]) ** 2
        weight[r2 <= (radius / STRIDE) ** 2] = 0.0
    return {"heat": heat, "weight": weight, "reg": reg, "reg_mask": reg_mask}


def detector_loss(out: torch.Tensor, targets: dict[str, torch.Tensor],
                  size_weight: float = 1.0, offset_weight: float = 1.0
                  ) -> tuple[torch.Tensor, dict[str, float]]:
    """Penalty-reduced focal loss on the heatmap plus L1 on log diameter and offset."""
    logit = out[:, 0]
    heat, weight = targets["heat"], targets["weight"]
    p = torch.sigmoid(logit).clamp(1e-4, 1 - 1e-4)
    pos = (heat >= 1.0).float()
    log_p = F.logsigmoid(logit)
    log_1p = F.logsigmoid(-logit)
    pos_loss = -((1 - p) ** 2) * log_p * pos
    neg_loss = -((1 - heat) ** 4) * (p**2) * log_1p * (1 - pos)
    n_pos = pos.sum().clamp(min=1.0)
    focal = ((pos_loss + neg_loss) * weight).sum() / n_pos
    m = targets["reg_mask"].unsqueeze(1)
    reg = out[:, 1:5]
    l1 = (reg - targets["reg"]).abs() * m
    size_l = l1[:, 0].sum() / n_pos
    off_l = l1[:, 1:].sum() / n_pos
    total = focal + size_weight * size_l + offset_weight * off_l
    return total, {"focal": float(focal.detach()), "size": float(size_l.detach()),
                   "offset": float(off_l.detach())}
