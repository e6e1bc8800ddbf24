"""Detector training patches: real lungs with real and simulated lesions inserted on the fly.

Each sample is a cube of the preprocessed 1 mm HU volume of a training study (``(z, y, x)``)
into which 0-``max_lesions`` lesions are pasted at lung positions of four kinds: open
parenchyma, against the pleura, next to a vessel and against the mediastinum or hilum. Real
ground-glass and part-solid nodules are drawn more often than their share of the VOIs, and
negative crops are often centred where a detector fired on no lesion (mined hard negatives).
The study's own reference lesions are never used as positives: their neighbourhood is an
*ignore* region (no loss), so held-out real lesions stay unseen. Augmentation (flips,
rotations, scaling, intensity and noise jitter) is applied later on the batch, in torch
(:mod:`lungcad_inference.training.augment`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from lungcad_inference.data.studies import Study
from lungcad_inference.data.vois import Voi
from lungcad_inference.inference import crop_cube
from lungcad_inference.synthesis import KINDS, Lesion3D, paste, real_lesion, simulate_lesion

POSITIONS = ("parenchyma", "pleura", "vessel", "mediastinum")


@dataclass(frozen=True)
class InsertionConfig:
    crop: int = 112  # sampled cube; augmentation resamples it to ``patch``
    p_lesion_patch: float = 0.7
    max_lesions: int = 2
    p_real: float = 0.6  # else simulated
    p_real_subsolid: float = 0.35  # of real draws: ground-glass / part-solid (texture 1-3)
    # parenchyma, pleura, vessel, mediastinum / hilum (the medial lung border)
    p_position: tuple[float, ...] = (0.35, 0.25, 0.2, 0.2)
    simulated_diameter_mm: tuple[float, float] = (3.0, 50.0)
    p_simulated_large: float = 0.5  # fill the real set's gap: half of simulated are 12-50 mm
    p_kind: tuple[float, float, float] = (0.4, 0.3, 0.3)  # solid, part-solid, ground glass
    p_shape: tuple[float, float, float] = (0.4, 0.35, 0.25)  # round, lobulated, spiculated
    p_anywhere_negative: float = 0.1
    p_hard_negative: float = 0.5  # of negative crops: at a mined detector false positive


@dataclass
class PreparedStudy:
    study: Study
    parenchyma: np.ndarray  # (n, 3) voxel indices
    pleura: np.ndarray
    vessel: np.ndarray
    lung_any: np.ndarray
    ignore: np.ndarray  # (m, 4): centre zyx, radius (mm) of reference lesions
    mediastinum: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int32))
    hard: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int32))

    def positions(self, kind: str) -> np.ndarray:
        """Insertion positions of one kind (:data:`POSITIONS`), falling back to the pleura
        when a study has none of that kind."""
        pool = getattr(self, kind)
        return pool if len(pool) else self.pleura


@dataclass
class Sample:
    hu: np.ndarray  # float32 (crop, crop, crop)
    centres: list[np.ndarray] = field(default_factory=list)  # voxel zyx within the crop
    diameters: list[float] = field(default_factory=list)
    ignore: list[tuple[np.ndarray, float]] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)


def _pick(rng: np.random.Generator, mask: np.ndarray, n: int) -> np.ndarray:
    idx = np.argwhere(mask)
    if len(idx) > n:
        idx = idx[rng.choice(len(idx), n, replace=False)]
    return idx.astype(np.int32)


def medial_border(lungs: np.ndarray, border: np.ndarray) -> np.ndarray:
    """The part of each lung's ``border`` that faces the mediastinum and hilum: voxels in the
    medial third between the lung's own centre and the midline of the two lungs (x axis)."""
    out = np.zeros_like(border)
    xs = [np.argwhere(lungs == lab)[:, 2].mean() for lab in (1, 2) if (lungs == lab).any()]
    if len(xs) < 2:
        return out
    mid = float(np.mean(xs))
    x = np.arange(lungs.shape[2])[None, None, :]
    for lab, cx in zip((1, 2), xs, strict=True):
        medial = np.abs(x - mid) < np.abs(cx - mid) / 3 * 2
        out |= border & (lungs == lab) & medial
    return out


def prepare_study(study: Study, rng: np.random.Generator, n: int = 20000,
                  hard_negatives: np.ndarray | None = None) -> PreparedStudy:
    """Index the positions where lesions can be inserted (computed once per study), and keep
    ``hard_negatives`` (voxel ``(z, y, x)`` where a detector fired on no lesion) for negative
    crops."""
    lungs = study.lungs > 0
    lung_dist = ndimage.distance_transform_edt(lungs)
    vessels = lungs & (study.hu > -500)
    vessel_dist = ndimage.distance_transform_edt(~vessels)
    open_lung = lungs & ~vessels
    ignore = np.array([[*c, d / 2] for c, d in zip(
        study.lesion_centres_zyx(), [les.diameter_mm for les in study.lesions], strict=True)]
    ).reshape(-1, 4)
    border = lungs & (lung_dist >= 1) & (lung_dist <= 3)
    hard = np.zeros((0, 3), np.int32) if hard_negatives is None else \
        np.rint(np.asarray(hard_negatives, float)).astype(np.int32).reshape(-1, 3)
    return PreparedStudy(
        study,
        _pick(rng, open_lung & (lung_dist >= 6) & (vessel_dist >= 3), n),
        _pick(rng, open_lung & (lung_dist >= 1) & (lung_dist <= 3), n),
        _pick(rng, open_lung & (lung_dist >= 4) & (vessel_dist >= 1) & (vessel_dist <= 2.5), n),
        _pick(rng, lungs, n),
        ignore,
        _pick(rng, medial_border(study.lungs, border), n),
        hard,
    )


class LesionBank:
    """Real VOIs (as :class:`Lesion3D`, built once) and a simulator for the rest."""

    def __init__(self, vois: list[Voi], config: InsertionConfig) -> None:
        self.real = [real_lesion(v.hu, v.mask, v.diameter_mm) for v in vois]
        self.subsolid = [i for i, v in enumerate(vois)
                         if v.texture_rating is not None and v.texture_rating <= 3]
        self.config = config

    def draw(self, rng: np.random.Generator) -> Lesion3D:
        c = self.config
        if self.real and rng.random() < c.p_real:
            if self.subsolid and rng.random() < c.p_real_subsolid:
                return self.real[self.subsolid[int(rng.integers(len(self.subsolid)))]]
            return self.real[int(rng.integers(len(self.real)))]
        lo, hi = c.simulated_diameter_mm
        if rng.random() < c.p_simulated_large:
            lo = max(lo, 12.0)
        diameter = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        kind = KINDS[int(rng.choice(3, p=c.p_kind))]
        shape = ("round", "lobulated", "spiculated")[int(rng.choice(3, p=c.p_shape))]
        return simulate_lesion(rng, diameter, kind, shape)


def draw_sample(rng: np.random.Generator, prepared: PreparedStudy, bank: LesionBank,
                config: InsertionConfig) -> Sample:
    """One training cube with its inserted lesions (centres relative to the cube)."""
    size = config.crop
    study = prepared.study
    positions: list[np.ndarray] = []
    lesions: list[Lesion3D] = []
    if rng.random() < config.p_lesion_patch:
        for _ in range(int(rng.integers(1, config.max_lesions + 1))):
            pool = prepared.positions(POSITIONS[int(rng.choice(len(POSITIONS),
                                                               p=config.p_position))])
            if not positions:
                pos = pool[int(rng.integers(len(pool)))]
            else:  # a second lesion somewhere in the same cube
                near = pool[np.all(np.abs(pool - positions[0]) < size // 2 - 8, axis=1)]
                if len(near) == 0:
                    break
                pos = near[int(rng.integers(len(near)))]
            lesion = bank.draw(rng)
            clash = any(np.linalg.norm(pos - p) < (lesion.diameter_mm + q.diameter_mm) / 2 + 3
                        for p, q in zip(positions, lesions, strict=True))
            clash |= any(np.linalg.norm(pos - ig[:3]) < ig[3] + lesion.diameter_mm / 2 + 5
                         for ig in prepared.ignore)
            if not clash:
                positions.append(pos)
                lesions.append(lesion)
        centre = positions[0] + rng.integers(-size // 4, size // 4 + 1, 3) if positions else \
            prepared.lung_any[int(rng.integers(len(prepared.lung_any)))]
    elif rng.random() < config.p_anywhere_negative:
        centre = np.array([rng.integers(0, n) for n in study.hu.shape])
    elif len(prepared.hard) and rng.random() < config.p_hard_negative:
        centre = prepared.hard[int(rng.integers(len(prepared.hard)))] + \
            rng.integers(-8, 9, 3)  # the false positive somewhere in the cube's centre
    else:
        pool = prepared.vessel if rng.random() < 0.5 else prepared.lung_any
        centre = pool[int(rng.integers(len(pool)))]
    start = np.asarray(centre, int) - size // 2
    hu = crop_cube(study.hu, centre, size, -1024.0)  # centres are whole voxels
    sample = Sample(hu)
    for pos, lesion in zip(positions, lesions, strict=True):
        local = pos - start
        paste(hu, lesion, local)
        sample.centres.append(local.astype(np.float32))
        sample.diameters.append(lesion.diameter_mm)
        sample.kinds.append(lesion.kind)
    for ig in prepared.ignore:
        sample.ignore.append((ig[:3] - start, float(ig[3]) + 4.0))
    return sample
