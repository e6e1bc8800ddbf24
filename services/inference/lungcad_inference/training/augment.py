"""On-the-fly augmentation in torch: one affine resampling per sample (flips, rotations,
isotropic scaling), then intensity scale/shift and Gaussian noise. Tensors are
``(batch, 1, z, y, x)``; points are voxel ``(z, y, x)``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F


@dataclass(frozen=True)
class AugmentConfig:
    flips: bool = True
    axial_rotation: bool = True  # any angle about the z axis
    tilt_deg: float = 10.0  # about the y and x axes
    scale: tuple[float, float] = (0.85, 1.15)  # input mm per output voxel
    intensity_scale: float = 0.05
    intensity_shift: float = 0.05
    noise_sigma: tuple[float, float] = (0.0, 0.04)  # in windowed units (1 = 700 HU)


def _rot(axis: int, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    i, j = [a for a in range(3) if a != axis]
    m = np.eye(3)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


def random_affine(rng: np.random.Generator, config: AugmentConfig) -> tuple[np.ndarray, float]:
    """``(M, s)``: a 3x3 zyx matrix mapping output offsets to input offsets, and its scale."""
    m = np.eye(3)
    if config.flips:
        m = np.diag(np.where(rng.random(3) < 0.5, -1.0, 1.0))
    if config.axial_rotation:
        m = _rot(0, rng.uniform(0, 2 * np.pi)) @ m
    t = np.deg2rad(config.tilt_deg)
    m = _rot(1, rng.uniform(-t, t)) @ _rot(2, rng.uniform(-t, t)) @ m
    s = float(rng.uniform(*config.scale))
    return m * s, s


def warp(volumes: torch.Tensor, matrices: np.ndarray, out_size: int) -> torch.Tensor:
    """Resample each ``(1, D, D, D)`` cube about its centre: output voxel ``u`` (offset from the
    output centre) reads input ``M u + centre``. Outside the cube reads -1 (air)."""
    n, _, d = volumes.shape[:3]
    half_out = (out_size - 1) / 2.0
    half_in = (d - 1) / 2.0
    axis = torch.arange(out_size, dtype=torch.float32) - half_out
    u = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1)  # (P,P,P,3) zyx
    m = torch.as_tensor(matrices, dtype=torch.float32)  # (n,3,3)
    v = torch.einsum("nij,zyxj->nzyxi", m, u) / half_in  # normalised zyx
    grid = v.flip(-1)  # grid_sample wants xyz
    return F.grid_sample(volumes + 1.0, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=True) - 1.0


def map_points(points: np.ndarray, matrix: np.ndarray, in_size: int, out_size: int) -> np.ndarray:
    """Input-cube voxel points -> output-patch voxel points for :func:`warp`'s ``matrix``."""
    return (np.asarray(points, float).reshape(-1, 3) - (in_size - 1) / 2.0) @ np.linalg.inv(
        matrix).T + (out_size - 1) / 2.0


def jitter_intensity(x: torch.Tensor, rng: np.random.Generator,
                     config: AugmentConfig) -> torch.Tensor:
    n = x.shape[0]
    scale = torch.as_tensor(1 + rng.normal(0, config.intensity_scale, n), dtype=torch.float32)
    shift = torch.as_tensor(rng.normal(0, config.intensity_shift, n), dtype=torch.float32)
    sigma = torch.as_tensor(rng.uniform(*config.noise_sigma, n), dtype=torch.float32)
    shape = (n,) + (1,) * (x.dim() - 1)
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    noise = torch.randn(x.shape, generator=gen) * sigma.view(shape)
    return (x * scale.view(shape) + shift.view(shape) + noise).clamp_(-1.5, 1.5)
