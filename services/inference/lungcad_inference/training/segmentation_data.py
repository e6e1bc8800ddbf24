"""Training samples for the nodule segmentation network from real VOIs (1 mm, ``(z, y, x)``).

A VOI is a tight box around one nodule with the readers' consensus mask. Each sample is a
``size^3`` cube whose centre voxel is the seed (the mask's centre of mass plus a random
offset, as a detector's centre would be):

- with probability ``background_p`` the VOI box is pasted into a real lung of a full study at a
  random lung position, feathered at the box faces (the nodule itself is kept whole), so the
  network sees real context around the box as it will in serving; the label is the VOI mask
  and 0 everywhere else (the background holds no nodule: the studies' own lesions are avoided);
- otherwise the box sits in air (-1000 HU), which is how ``lungcad evaluate segmentation`` has
  to present a VOI on its own.

Then flips, axial 90-degree rotations and intensity jitter. Inputs come from
:func:`lungcad_inference.segmentation.seg_input`, as in serving.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lungcad_inference.data.studies import Study
from lungcad_inference.data.vois import Voi
from lungcad_inference.segmentation import seg_input


@dataclass(frozen=True)
class SegSampleConfig:
    size: int = 48
    jitter_mm: float = 2.5
    background_p: float = 0.7
    feather_mm: float = 3.0
    intensity_scale: float = 0.05
    intensity_shift_hu: float = 30.0
    noise_hu: float = 20.0


@dataclass
class Background:
    """A study's HU volume and lung positions far from its own lesions."""

    hu: np.ndarray
    positions: np.ndarray  # (n, 3) voxel indices


def prepare_background(study: Study, rng: np.random.Generator, keep: int = 20000,
                       margin_mm: float = 15.0) -> Background:
    pos = np.argwhere(study.lungs > 0)
    if len(pos) > keep:
        pos = pos[rng.choice(len(pos), keep, replace=False)]
    for c, les in zip(study.lesion_centres_zyx(), study.lesions, strict=True):
        far = np.linalg.norm(pos - c, axis=1) > les.diameter_mm / 2 + margin_mm
        pos = pos[far]
    return Background(study.hu, pos)


def _box_alpha(shape: tuple[int, ...], feather: float) -> np.ndarray:
    """1 deep inside a box, falling linearly to 0 at its faces over ``feather`` voxels."""
    d = None
    for axis, n in enumerate(shape):
        i = np.arange(n, dtype=np.float32)
        a = np.minimum(i + 1, n - i) / max(feather, 1e-3)
        a = a.reshape([-1 if k == axis else 1 for k in range(len(shape))])
        d = a if d is None else np.minimum(d, a)
    return np.clip(np.broadcast_to(d, shape), 0, 1).astype(np.float32)


def place_voi(voi: Voi, size: int, offset_mm: np.ndarray, host: np.ndarray | None,
              feather_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """``(hu, label)`` cubes of ``size``: the VOI placed so that the centre voxel (the seed)
    lies ``offset_mm`` from its mask's centre of mass, over ``host`` (a ``size^3`` HU cube) or
    air."""
    m = voi.mask >= 0.5
    com = np.array(ndimage.center_of_mass(m if m.any() else voi.mask))
    start = np.rint(com + offset_mm).astype(int) - size // 2  # VOI index of cube voxel 0
    lo = np.maximum(start, 0)
    hi = np.minimum(start + size, voi.hu.shape)
    src = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    dst = tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start, strict=True))
    hu = np.full((size,) * 3, -1000.0, np.float32) if host is None else host.astype(np.float32)
    label = np.zeros((size,) * 3, np.float32)
    part = voi.hu[src].astype(np.float32)
    soft = voi.mask[src].astype(np.float32)
    if host is None:
        hu[dst] = part
    else:
        nodule = ndimage.gaussian_filter(ndimage.binary_dilation(soft >= 0.5).astype(np.float32),
                                         1.0)
        alpha = np.maximum(_box_alpha(part.shape, feather_mm), np.clip(nodule * 1.5, 0, 1))
        hu[dst] = alpha * part + (1 - alpha) * hu[dst]
    label[dst] = soft
    return hu, label


def draw_seg_sample(rng: np.random.Generator, voi: Voi, backgrounds: list[Background],
                    config: SegSampleConfig) -> tuple[np.ndarray, np.ndarray]:
    """One augmented training sample: ``(input (2, s, s, s), target (s, s, s))``."""
    size = config.size
    host = None
    if backgrounds and rng.random() < config.background_p:
        bg = backgrounds[int(rng.integers(len(backgrounds)))]
        centre = bg.positions[int(rng.integers(len(bg.positions)))]
        from lungcad_inference.segmentation import crop_at

        host, _ = crop_at(bg.hu, centre, size, -1000.0)
    offset = rng.uniform(-config.jitter_mm, config.jitter_mm, 3)
    hu, label = place_voi(voi, size, offset, host, config.feather_mm)
    for axis in range(3):
        if rng.random() < 0.5:
            hu, label = np.flip(hu, axis), np.flip(label, axis)
    k = int(rng.integers(4))
    hu, label = np.rot90(hu, k, axes=(1, 2)), np.rot90(label, k, axes=(1, 2))
    hu = hu * (1 + rng.normal(0, config.intensity_scale)) + \
        rng.normal(0, config.intensity_shift_hu)
    hu = hu + rng.normal(0, rng.uniform(0, config.noise_hu), hu.shape)
    return seg_input(np.ascontiguousarray(hu, np.float32)), np.ascontiguousarray(label)
