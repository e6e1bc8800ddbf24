"""Training data for the learned lung mask: each study on the preprocessing's 2 mm canonical
grid (the whole field of view, as the preprocessing segments it), with the classical lung
labels, the body and the study's reference lesions.

The target is "lung, lesions included": the classical labels (``lung_mask.segment_lungs``)
plus every reference lesion's voxels (the QIN algorithms' majority SEG, the LIDC consensus as
a sphere), so a network learns that a mass inside the pleural cavity is lung. Cached as
``.npz`` under ``cache_dir`` (derived from the shared data: never commit it).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from lungcad.imaging import Geometry

CACHE_VERSION = 1


@dataclass
class LowStudy:
    """One study on its 2 mm canonical grid: ``hu`` int16, ``lungs`` uint8 classical labels,
    ``body`` bool and ``lesions`` bool (the reference lesions), all ``(z, y, x)``."""

    name: str
    hu: np.ndarray
    lungs: np.ndarray
    body: np.ndarray
    lesions: np.ndarray
    geometry: Geometry


def _key(path: Path) -> str:
    st = path.stat()
    raw = f"{path.name}|{st.st_size}|{int(st.st_mtime)}|{CACHE_VERSION}"
    return hashlib.sha1(raw.encode()).hexdigest()[:12]


def lesion_mask_on(study, grid: Geometry) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The study's reference lesions (segmentation where it exists, else a sphere of the
    lesion's diameter) as a bool mask on ``grid`` (identity direction, like the study's)."""
    out = np.zeros(grid.shape, bool)
    zz, yy, xx = np.indices(grid.shape, sparse=True)
    if study.lesion_mask is not None:
        from lungcad.imaging import Volume
        from lungcad_preprocess import resample as rs

        mapped = rs.resample(Volume(study.lesion_mask, study.geometry), grid, nearest=True,
                             default=0)
        out |= mapped > 0
    centres = grid.world_to_index(np.array([les.centre_mm for les in study.lesions])) \
        if study.lesions else np.zeros((0, 3))
    for c, les in zip(centres, study.lesions, strict=True):
        if study.lesion_mask is not None:
            continue
        r = les.diameter_mm / 2 / grid.spacing[0]
        out |= ((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2) <= r * r
    return out


def load_low_study(path: Path, cache_dir: Path | None, study_cache: Path | None = None,
                   spacing_mm: float = 2.0, threads: int = 2) -> LowStudy:
    """Read ``path`` (a study zip), resample it to the ``spacing_mm`` canonical grid as the
    preprocessing does, segment the lungs classically and map the reference lesions."""
    from lungcad_inference.data.studies import _folder, load_study, study_name
    from lungcad_preprocess import resample as rs
    from lungcad_preprocess.lung_mask import LungMaskParams, body_mask, segment_lungs
    from lungcad_preprocess.pipeline import PreprocessOptions, read_input

    path = Path(path)
    name = study_name(path)
    cached = cache_dir / f"lowstudy-{name}-{_key(path)}.npz" if cache_dir else None
    if cached is not None and cached.exists():
        with np.load(cached) as z:
            geo = Geometry(tuple(z["shape"]), tuple(z["spacing"]), tuple(z["origin"]))
            return LowStudy(name, z["hu"], z["lungs"], z["body"], z["lesions"], geo)
    options = PreprocessOptions(threads=threads)
    with _folder(path) as folder:
        volume, _ = read_input(folder, options)
    grid = rs.canonical_grid(volume.geometry, spacing_mm)
    low = rs.resample(volume.to_sitk(), grid, threads=threads)
    del volume
    lungs = segment_lungs(low, spacing_mm)
    body = body_mask(low, LungMaskParams(), spacing_mm)
    hu = rs.to_int16_hu(low)
    study = load_study(path, study_cache if study_cache is not None else cache_dir,
                       threads=threads)
    lesions = lesion_mask_on(study, grid)
    out = LowStudy(name, hu, lungs, body, lesions, grid)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cached, hu=hu, lungs=lungs, body=body, lesions=lesions,
                            shape=np.array(grid.shape), spacing=np.array(grid.spacing),
                            origin=np.array(grid.origin))
    return out


@dataclass(frozen=True)
class MassSampleConfig:
    """How training slices are drawn and masses pasted (all sizes in mm)."""

    crop: int = 96  # pixels (4 mm): 384 mm, a chest's width
    slices: int = 3
    paste_share: float = 0.7  # share of samples with pasted masses
    max_masses: int = 3
    radius_mm: tuple[float, float] = (6.0, 45.0)  # log-uniform: 12-90 mm masses
    border_share: float = 0.8  # centred on the lung border (pleura, mediastinum, hilum)
    subsolid_share: float = 0.15
    mass_weight: float = 5.0  # loss weight on pasted and reference lesion voxels
    max_cover: float = 0.4  # a mass may fill at most this share of the slice's lung


def _boundary(lungs: np.ndarray) -> np.ndarray:
    lung = lungs > 0
    return lung & ~ndi.binary_erosion(lung)


def _mass(rng: np.random.Generator, shape: tuple[int, ...], centre: np.ndarray,
          radius: float, ks: np.ndarray) -> np.ndarray:
    """A lobulated ellipsoid (float in-mass weight 0-1 with a one-voxel soft edge) on slices
    ``ks`` of a ``shape`` volume, radius in voxels."""
    zz = ks[:, None, None].astype(np.float32)
    yy = np.arange(shape[1], dtype=np.float32)[None, :, None]
    xx = np.arange(shape[2], dtype=np.float32)[None, None, :]
    axes = radius * rng.uniform(0.7, 1.3, 3)
    dz, dy, dx = (zz - centre[0]) / axes[0], (yy - centre[1]) / axes[1], (xx - centre[2]) / axes[2]
    r = np.sqrt(dz * dz + dy * dy + dx * dx)
    theta = np.arctan2(dy, dx)
    phi = np.arctan2(dz, np.sqrt(dy * dy + dx * dx) + 1e-6)
    bumps = 1.0 + sum(rng.uniform(0, 0.12) * np.cos(int(rng.integers(2, 7)) * theta
                                                     + rng.uniform(0, 6.3))
                      * np.cos(int(rng.integers(1, 4)) * phi) for _ in range(3))
    edge = (bumps - r) * radius  # signed distance-like, voxels, positive inside
    return np.clip(edge + 0.5, 0.0, 1.0)


def draw_sample(rng: np.random.Generator, study: LowStudy, cfg: MassSampleConfig
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(hu slices (slices, crop, crop) float32, target (crop, crop) float32, weight)``: a
    slice of ``study`` (mostly where the lungs are), masses pasted into the lungs, target
    "lung, lesions included" on the middle slice."""
    from lungcad_preprocess.lung_net import stack_slices

    lung_z = np.nonzero((study.lungs > 0).any(axis=(1, 2)))[0]
    z0, z1 = int(lung_z[0]), int(lung_z[-1])
    if rng.random() < 0.9:
        k = int(rng.integers(z0, z1 + 1))
    else:
        k = int(rng.integers(max(0, z0 - 10), min(study.hu.shape[0], z1 + 11)))
    half = cfg.slices // 2
    ks = np.clip(np.arange(k - half, k + half + 1), 0, study.hu.shape[0] - 1)
    hu = stack_slices(study.hu, np.array([k]), cfg.slices)[0].astype(np.float32)
    region = (study.lungs[ks] > 0) | study.lesions[ks]
    target = region[half].astype(np.float32)
    weight = np.ones_like(target)
    weight[study.lesions[k]] = cfg.mass_weight
    if rng.random() < cfg.paste_share:
        border = _boundary(study.lungs[max(0, k - 12):k + 13])
        for _ in range(int(rng.integers(1, cfg.max_masses + 1))):
            radius = float(np.exp(rng.uniform(*np.log(cfg.radius_mm)))) / study.geometry.spacing[0]
            if rng.random() < cfg.border_share and border.any():
                pts = np.argwhere(border)
                centre = pts[int(rng.integers(len(pts)))].astype(np.float32)
                centre[0] += max(0, k - 12)
            else:
                pts = np.argwhere(study.lungs[k] > 0)
                if not len(pts):
                    continue
                yx = pts[int(rng.integers(len(pts)))]
                centre = np.array([k, yx[0], yx[1]], np.float32)
            centre += rng.normal(0, radius * 0.25, 3).astype(np.float32)
            alpha = _mass(rng, study.hu.shape, centre, radius, ks) * region
            covered = float((alpha[half] > 0.5).sum())
            if covered == 0 or covered > cfg.max_cover * float(region[half].sum()):
                continue  # a slice with no lung left shows nothing to learn from
            if rng.random() < cfg.subsolid_share:
                level = rng.uniform(-650, -350)
            else:
                level = rng.uniform(-20, 70)
            texture = ndi.gaussian_filter(rng.normal(0, 1, alpha.shape), (0, 1.0, 1.0))
            mass_hu = level + texture * rng.uniform(10, 40) / max(texture.std(), 1e-3)
            hu = hu * (1 - alpha) + mass_hu * alpha
            weight[alpha[half] > 0.5] = cfg.mass_weight
    hu = hu * rng.uniform(0.97, 1.03) + rng.uniform(-20, 20)
    hu += rng.normal(0, rng.uniform(0, 15), hu.shape)
    if rng.random() < 0.5:
        hu, target, weight = hu[..., ::-1], target[..., ::-1], weight[..., ::-1]
    return _crop(rng, hu, target, weight, study.body[k], cfg.crop)


def _crop(rng: np.random.Generator, hu: np.ndarray, target: np.ndarray, weight: np.ndarray,
          body: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A ``size`` square around the body's centre (randomly shifted), padded with air."""
    h, w = target.shape
    ys, xs = np.nonzero(body) if body.any() else (np.array([h // 2]), np.array([w // 2]))
    cy = int(ys.mean() + rng.integers(-20, 21)) - size // 2
    cx = int(xs.mean() + rng.integers(-20, 21)) - size // 2
    out_hu = np.full((hu.shape[0], size, size), -1024.0, np.float32)
    out_t = np.zeros((size, size), np.float32)
    out_w = np.ones((size, size), np.float32)
    y0, x0 = max(cy, 0), max(cx, 0)
    y1, x1 = min(cy + size, h), min(cx + size, w)
    if y1 > y0 and x1 > x0:
        sy, sx = slice(y0 - cy, y1 - cy), slice(x0 - cx, x1 - cx)
        out_hu[:, sy, sx] = hu[:, y0:y1, x0:x1]
        out_t[sy, sx] = target[y0:y1, x0:x1]
        out_w[sy, sx] = weight[y0:y1, x0:x1]
    return out_hu, out_t, out_w


def coarsen(study: LowStudy) -> LowStudy:
    """``study`` on its grid halved (4 mm, block means; labels and masks by majority), the
    grid the network works on (``lung_net.predict_probability``)."""
    from lungcad_preprocess.lung_net import halve

    g = study.geometry
    origin = tuple(float(o) + s / 2 for o, s in zip(g.origin, g.spacing[::-1], strict=True))
    hu = halve(study.hu)
    grid = Geometry(hu.shape, tuple(2 * s for s in g.spacing), origin)
    lungs = np.where(halve(study.lungs > 0) >= 0.5, np.uint8(1), np.uint8(0))
    return LowStudy(study.name, hu, lungs, halve(study.body) >= 0.5,
                    halve(study.lesions) >= 0.5, grid)
