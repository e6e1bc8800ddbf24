"""Lesions to insert into real lungs: real LIDC nodules (with their masks) and simulated ones.

A lesion is a pair of ``(z, y, x)`` float32 arrays on a 1 mm grid: ``hu`` (the lesion's own
attenuation) and ``alpha`` (its soft mask in [0, 1], about 1 mm of edge blur). :func:`paste`
blends it into a host volume as ``(1 - alpha) * host + alpha * max(lesion, host)``, so vessels,
fissures and the pleura the lesion touches stay visible through it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

KINDS = ("solid", "part_solid", "ground_glass")


@dataclass(frozen=True)
class Lesion3D:
    hu: np.ndarray
    alpha: np.ndarray
    diameter_mm: float
    kind: str  # "real" or one of KINDS
    shape: str = ""  # "round", "lobulated", "spiculated" (simulated only)

    @property
    def centre_offset(self) -> np.ndarray:
        """Alpha-weighted centre ``(z, y, x)`` in the lesion array's voxel coordinates."""
        return np.array(ndimage.center_of_mass(self.alpha))


def real_lesion(hu: np.ndarray, mask: np.ndarray, diameter_mm: float, margin: int = 3) -> Lesion3D:
    """A real nodule from a 1 mm VOI: HU and a soft mask (the resampled mask, lightly blurred),
    cropped to the mask's box plus ``margin`` voxels."""
    alpha = ndimage.gaussian_filter(mask.astype(np.float32), 0.6)
    nz = np.argwhere(mask >= 0.5)
    if nz.size == 0:
        nz = np.argwhere(mask > 0)
    lo = np.maximum(nz.min(axis=0) - margin, 0)
    hi = np.minimum(nz.max(axis=0) + margin + 1, mask.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    return Lesion3D(hu[box].astype(np.float32), np.clip(alpha[box], 0, 1), diameter_mm, "real")


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    n = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return n / (n.std() + 1e-6)


def simulate_lesion(rng: np.random.Generator, diameter_mm: float, kind: str = "solid",
                    shape: str = "round") -> Lesion3D:
    """A simulated nodule of about ``diameter_mm`` (3-30 mm).

    ``kind``: ``solid`` (about 0-60 HU), ``ground_glass`` (about -700 to -450 HU) or
    ``part_solid`` (ground glass with a solid core of 30-60 % of the radius). ``shape``:
    ``round`` (a jittered ellipsoid), ``lobulated`` (low-order bumps on the radius) or
    ``spiculated`` (lobulated plus 4-12 thin tapering spicules).
    """
    r = diameter_mm / 2.0
    half = int(np.ceil(r * (2.2 if shape == "spiculated" else 1.4))) + 3
    grid = np.mgrid[-half:half + 1, -half:half + 1, -half:half + 1].astype(np.float32)
    axes = rng.uniform(0.8, 1.2, 3)
    rot = _random_rotation(rng)
    p = np.tensordot(rot, grid, axes=1) / axes[:, None, None, None]
    dist = np.sqrt((p ** 2).sum(0)) + 1e-6
    unit = p / dist
    radius = np.full(dist.shape, r, np.float32)
    if shape in ("lobulated", "spiculated"):
        for _ in range(int(rng.integers(3, 7))):
            d = rng.standard_normal(3)
            d /= np.linalg.norm(d)
            cos = np.tensordot(d, unit, axes=1)
            radius += r * rng.uniform(0.08, 0.25) * np.clip(cos, 0, 1) ** rng.uniform(2, 6)
    alpha = np.clip(radius - dist + 0.5, 0, 1)
    if shape == "spiculated":
        for _ in range(int(rng.integers(4, 13))):
            d = rng.standard_normal(3)
            d /= np.linalg.norm(d)
            along = np.tensordot(d, p, axes=1)
            across = np.sqrt(np.maximum(dist ** 2 - along ** 2, 0))
            length = r * rng.uniform(1.4, 2.1)
            width = rng.uniform(0.5, 1.0) * np.clip(1 - along / length, 0, 1)
            spike = np.clip(width - across + 0.5, 0, 1) * (along > 0) * (along < length)
            alpha = np.maximum(alpha, spike * 0.8)
    texture = _smooth_noise(rng, alpha.shape, 1.0)
    if kind == "solid":
        hu = rng.uniform(0, 60) + 25 * texture
    elif kind == "ground_glass":
        hu = rng.uniform(-700, -450) + 60 * texture
    elif kind == "part_solid":
        hu = rng.uniform(-680, -480) + 60 * texture
        core = np.clip(radius * rng.uniform(0.3, 0.6) - dist + 0.5, 0, 1)
        hu = hu * (1 - core) + (rng.uniform(0, 50) + 25 * texture) * core
    else:
        raise ValueError(f"unknown lesion kind {kind!r}")
    return Lesion3D(hu.astype(np.float32), alpha.astype(np.float32), diameter_mm, kind, shape)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return (q * np.sign(np.diag(r))).astype(np.float32)


def paste(host: np.ndarray, lesion: Lesion3D, centre_zyx: np.ndarray) -> np.ndarray:
    """Blend ``lesion`` into ``host`` (float32 HU, modified in place) with the lesion's alpha
    centre at voxel ``centre_zyx``; parts outside ``host`` are dropped. Returns ``host``."""
    start = np.rint(np.asarray(centre_zyx) - lesion.centre_offset).astype(int)
    stop = start + np.asarray(lesion.alpha.shape)
    lo = np.maximum(start, 0)
    hi = np.minimum(stop, host.shape)
    if np.any(hi <= lo):
        return host
    dst = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    src = tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start, strict=True))
    a = lesion.alpha[src]
    h = host[dst]
    host[dst] = (1 - a) * h + a * np.maximum(lesion.hu[src], h)
    return host
