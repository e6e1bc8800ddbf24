"""Malignancy-model inputs from real nodule VOIs, built exactly as serving builds them.

Each VOI (1 mm, ``(z, y, x)``) is centred by its mask's centre of mass in a ``36^3`` air canvas
(``box`` marks the VOI's own extent), passed through
:func:`lungcad_inference.inference.malignancy_input` (own segmentation, box to air, window), and
randomly cropped to ``32^3`` during training (centre crop otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lungcad_inference.data.vois import Voi
from lungcad_inference.inference import PATCH_MM, malignancy_input

CANVAS = PATCH_MM + 4


@dataclass
class MalignancySet:
    """Stacked inputs: ``images`` (n, CANVAS^3) windowed, ``seg_diameter_mm``, labels, groups."""

    images: np.ndarray
    seg_diameter_mm: np.ndarray
    mask_diameter_mm: np.ndarray
    reader_diameter_mm: np.ndarray
    labels: np.ndarray
    patients: np.ndarray
    nodule_ids: np.ndarray

    def subset(self, idx: np.ndarray) -> MalignancySet:
        return MalignancySet(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))


def voi_cube(voi: Voi, size: int = CANVAS, outline: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(hu, box, outline)``: the VOI centred (by mask centre of mass) in an air cube of
    ``size``, and ``outline`` (a mask on the VOI's grid) cut the same way."""
    m = voi.mask >= 0.5
    com = np.array(ndimage.center_of_mass(m if m.any() else voi.mask))
    start = np.rint(com).astype(int) - size // 2
    hu = np.full((size,) * 3, -1000.0, np.float32)
    box = np.zeros((size,) * 3, bool)
    lo = np.maximum(start, 0)
    hi = np.minimum(start + size, voi.hu.shape)
    dst = tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start, strict=True))
    src = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    hu[dst] = voi.hu[src]
    box[dst] = True
    cut = None
    if outline is not None:
        cut = np.zeros((size,) * 3, bool)
        cut[dst] = outline[src]
    return hu, box, cut


def build_set(vois: list[Voi], include_unlabelled: bool = False,
              outlines: dict[tuple[str, str], np.ndarray] | None = None) -> MalignancySet:
    """Inputs for every VOI with a binary label (or all, for scoring). ``outlines``: learned
    masks on the VOIs' 1 mm grids by ``(patient_id, nodule_id)`` (out-of-fold ones for CV);
    a VOI without one falls back to the threshold segmentation."""
    from lungcad_inference.nodule_size import equivalent_diameter_mm

    rows = [v for v in vois if include_unlabelled or v.label is not None]
    images, seg_d = [], []
    for v in rows:
        full = (outlines or {}).get((v.patient_id, v.nodule_id))
        if full is not None and full.shape != v.hu.shape:
            full = None
        hu, box, cut = voi_cube(v, outline=full)
        image, d = malignancy_input(hu, box, cut, None if full is None
                                    else equivalent_diameter_mm(full))
        images.append(image.astype(np.float16))
        seg_d.append(d)
    return MalignancySet(np.stack(images), np.asarray(seg_d, np.float32),
                         np.asarray([v.mask_diameter_mm for v in rows], np.float32),
                         np.asarray([v.diameter_mm for v in rows], np.float32),
                         np.asarray([-1 if v.label is None else v.label for v in rows]),
                         np.asarray([v.patient_id for v in rows]),
                         np.asarray([v.nodule_id for v in rows]))


def patient_folds(patients: np.ndarray, k: int = 5, seed: int = 0) -> np.ndarray:
    """Fold index per row; every patient's nodules share one fold."""
    uniq = np.unique(patients)
    order = np.random.default_rng(seed).permutation(len(uniq))
    fold_of = {uniq[i]: n % k for n, i in enumerate(order)}
    return np.array([fold_of[p] for p in patients])


def augment_batch(rng: np.random.Generator, images: np.ndarray, train: bool) -> np.ndarray:
    """Crop ``CANVAS^3`` -> ``PATCH_MM^3`` (random shift +-2 and flips / axial rot90 / intensity
    and noise jitter when ``train``)."""
    n = len(images)
    out = np.empty((n, PATCH_MM, PATCH_MM, PATCH_MM), np.float32)
    c = (CANVAS - PATCH_MM) // 2
    for i in range(n):
        o = rng.integers(0, CANVAS - PATCH_MM + 1, 3) if train else np.array([c, c, c])
        x = images[i, o[0]:o[0] + PATCH_MM, o[1]:o[1] + PATCH_MM, o[2]:o[2] + PATCH_MM]
        x = x.astype(np.float32)
        if train:
            for ax in range(3):
                if rng.random() < 0.5:
                    x = np.flip(x, ax)
            x = np.rot90(x, int(rng.integers(4)), axes=(1, 2))
            x = x * (1 + rng.normal(0, 0.05)) + rng.normal(0, 0.03)
            x = x + rng.normal(0, rng.uniform(0, 0.03), x.shape)
        out[i] = x
    return out
