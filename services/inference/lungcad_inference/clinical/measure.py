"""Segment one nodule around a detector candidate and measure it as a radiologist would.

Pure functions on the preprocessed volume: ``hu`` int16 and ``lungs`` uint8 (1 right, 2 left),
both ``(z, y, x)`` on a 1 mm isotropic, identity-direction LPS grid (z increases towards the
head, y towards the back, x towards the patient's left), as ``lungcad_preprocess`` produces.

Segmentation: threshold at ``GROW_HU`` (catches ground glass), keep the connected component
that holds the seed, bounded by a sphere a little larger than the detector's diameter so that
vessels and the chest wall do not leak in. Measurements:

- long and short axis on the axial slice of largest extent (pixel-exact Feret diameters);
- volume (mm^3), mean HU;
- type from the solid fraction (voxels above ``SOLID_HU`` after a small opening);
- location: side from the lung labels; lobe estimated from the position inside that lung
  (:func:`lobe_of`: right upper/middle/lower, left upper with its lingula, left lower; no fissure
  segmentation), juxtapleural when the nodule touches dense tissue outside the lungs;
- margin: spiculation from the number of thin strands leaving the nodule (vessels touching a
  nodule look the same, so a few are tolerated), lobulation from convexity. Heuristics, not
  validated against radiologists' ratings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

GROW_HU = -650.0
# the learned outline is used up to this size (volume-equivalent diameter of the threshold
# growth): the network trained on 3-32 mm LIDC nodules and its cross-validated Dice falls
# above 20 mm (model card); masses beyond it are grown at the half-maximum threshold
LEARNED_MAX_MM = 20.0
# a learned outline and a detector diameter both at most this size cannot hide a mass beyond
# LEARNED_MAX_MM (the network under-segments large masses by about half, not by a factor of
# two or more): the threshold growth that checks it is skipped (most candidates; it was two
# thirds of the measuring time)
SMALL_MM = 10.0
SOLID_HU = -300.0
MIN_DIAMETER_MM = 3.0
FULL = np.ones((3, 3, 3), bool)  # 26-connectivity: thin oblique strands stay whole
SPICULATED_STRANDS = 5  # a nodule usually touches 1 to 3 vessels; spicules are many
# Fissures as planes in the lung's own box (height 0 at the base, 1 at the apex; depth 0 at the
# front, 1 at the back): the oblique fissure rises from the anterior base to about 60 % of the
# height at the back (T4-T5); the right horizontal fissure (4th costal cartilage) and the
# lingula's upper border lie near 55 % of the height, in front of the oblique fissure.
OBLIQUE_POSTERIOR_HEIGHT = 0.6
HORIZONTAL_HEIGHT = 0.55


@dataclass(frozen=True)
class NoduleMeasurement:
    mask: np.ndarray  # bool, (z, y, x), the crop starting at ``offset``
    offset: tuple[int, int, int]
    center_zyx: tuple[float, float, float]  # centroid of the mask (voxels, full grid)
    volume_mm3: float
    mean_hu: float
    long_axis_mm: float
    short_axis_mm: float
    key_slice: int  # z index (full grid) of the axial slice of largest extent
    solid_long_mm: float
    solid_short_mm: float
    solid_fraction: float
    nodule_type: str
    side: str
    zone: str  # the lobe: upper, middle (right only) or lower
    juxtapleural: bool
    margin: str
    margin_score: float
    lobulation: float
    segmented: bool  # False: nothing dense at the candidate; a sphere stands in
    lingula: bool = False  # left upper lobe, below the level of the right horizontal fissure


def _ball(radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    zz, yy, xx = np.meshgrid(r, r, r, indexing="ij")
    return (zz**2 + yy**2 + xx**2) <= radius**2


def feret_2d(mask2d: np.ndarray, spacing_yx: tuple[float, float] = (1.0, 1.0)
             ) -> tuple[float, float]:
    """(long, short) axis in mm of a 2D region: the maximum caliper diameter, and the extent
    perpendicular to it, both measured on pixel corners (so one pixel is 1 x 1 mm)."""
    ys, xs = np.nonzero(mask2d)
    if ys.size == 0:
        return 0.0, 0.0
    corners = np.concatenate([np.stack([ys + dy, xs + dx], axis=1)
                              for dy in (0, 1) for dx in (0, 1)]).astype(float)
    corners *= np.asarray(spacing_yx, float)
    corners = np.unique(corners, axis=0)
    try:
        hull = corners[ConvexHull(corners).vertices]
    except (QhullError, ValueError):
        hull = corners
    diffs = hull[:, None, :] - hull[None, :, :]
    dist = np.sqrt((diffs**2).sum(-1))
    i, j = np.unravel_index(int(np.argmax(dist)), dist.shape)
    long_axis = float(dist[i, j])
    if long_axis == 0:
        return 0.0, 0.0
    direction = (hull[j] - hull[i]) / long_axis
    normal = np.array([-direction[1], direction[0]])
    proj = hull @ normal
    return long_axis, float(proj.max() - proj.min())


def _axial_axes(mask: np.ndarray) -> tuple[float, float, int]:
    areas = mask.sum(axis=(1, 2))
    if areas.max() == 0:
        return 0.0, 0.0, 0
    best = (0.0, 0.0, 0)
    for z in np.nonzero(areas >= areas.max() * 0.8)[0]:  # near-largest slices: take the longest
        long_axis, short_axis = feret_2d(mask[z])
        if long_axis > best[0]:
            best = (long_axis, short_axis, int(z))
    return best


def classify_type(hu: np.ndarray, mask: np.ndarray) -> tuple[str, float, float, float]:
    """``(type, solid fraction, solid long axis, solid short axis)`` of a nodule mask on a 1 mm
    HU array: the solid component is the voxels above ``SOLID_HU`` opened by one voxel; solid
    when it is at least half the nodule, ground-glass when under 5 % or under 2 mm across."""
    solid = ndimage.binary_opening((hu > SOLID_HU) & mask, _ball(1)) if mask.any() else mask
    solid_fraction = float(solid.sum() / max(mask.sum(), 1))
    solid_long, solid_short, _ = _axial_axes(solid)
    if solid_fraction >= 0.5:
        nodule_type = "solid"
    elif solid_fraction < 0.05 or solid_long < 2:
        nodule_type = "ground-glass"
    else:
        nodule_type = "part-solid"
    return nodule_type, solid_fraction, solid_long, solid_short


def _box(center: np.ndarray, half: int, shape: tuple[int, ...]) -> tuple[slice, ...]:
    lo = np.maximum(np.floor(center).astype(int) - half, 0)
    hi = np.minimum(np.floor(center).astype(int) + half + 1, shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def half_maximum_threshold(sub: np.ndarray, seed: np.ndarray, diameter: float,
                           lung: np.ndarray) -> float:
    """The HU half-way between the nodule's core and the surrounding parenchyma (the usual
    half-maximum rule for size measurement), kept within [GROW_HU - 100, SOLID_HU]."""
    core = _sphere(sub.shape, seed, max(1.5, diameter / 6))
    core_hu = float(np.median(sub[core])) if core.any() else 0.0
    parenchyma = lung & (sub < -600) & ~_sphere(sub.shape, seed, diameter / 2 + 2)
    background = float(np.median(sub[parenchyma])) if parenchyma.sum() > 50 else -850.0
    return float(np.clip((core_hu + background) / 2, GROW_HU - 100, SOLID_HU))


def component_at(mask: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """The 26-connected component of ``mask`` at (or within 2 voxels of) ``seed``."""
    labels, count = ndimage.label(mask, structure=FULL)
    if count == 0:
        return np.zeros_like(mask)
    s = np.round(seed).astype(int)
    window = tuple(slice(max(c - 2, 0), max(c + 3, 0)) for c in s)
    picked = labels[window]
    picked = picked[picked > 0]
    if picked.size == 0:
        return np.zeros_like(mask)
    return labels == np.bincount(picked).argmax()


def _grow(sub: np.ndarray, seed: np.ndarray, radius: float, allowed: np.ndarray,
          threshold: float, open_radius: int = 1) -> np.ndarray:
    """The nodule: voxels above ``threshold`` connected to the seed, within ``radius`` and
    ``allowed`` (the lungs, slightly dilated: not into the chest wall), with attachments
    thinner than ``open_radius`` (vessels, pleural tags) cut off."""
    region = component_at((sub > threshold) & _sphere(sub.shape, seed, radius) & allowed, seed)
    if not region.any():
        return region
    opened = ndimage.binary_opening(region, _ball(open_radius))
    labels, count = ndimage.label(opened)
    if count:
        s = tuple(np.clip(np.round(seed).astype(int), 0, np.asarray(sub.shape) - 1))
        core = labels[s]
        if core > 0 and (labels == core).sum() >= 0.3 * region.sum():
            region = ndimage.binary_dilation(labels == core, _ball(open_radius)) & region
    return ndimage.binary_fill_holes(region)


def with_ground_glass(sub: np.ndarray, solid: np.ndarray, seed: np.ndarray, radius: float,
                      allowed: np.ndarray, open_radius: int) -> np.ndarray:
    """Extend a dense core by its ground-glass component when it has one: voxels above
    ``GROW_HU`` beyond the core's one-voxel partial-volume rim, averaging ground-glass HU."""
    total = _grow(sub, seed, radius, allowed, GROW_HU, open_radius)
    extra = total & ~ndimage.binary_dilation(solid, _ball(1))
    if extra.sum() > 0.5 * max(solid.sum(), 1) and float(sub[extra].mean()) < -350:
        return total | solid
    return solid


def count_protrusions(nodule: np.ndarray, raw: np.ndarray, seed: np.ndarray,
                      reach_mm: float) -> int:
    """Thin strands leaving the nodule (spicules; vessels look alike): components of the raw
    region outside the nodule, within ``reach_mm`` of its surface, at least 3 voxels long."""
    radius = float(np.sqrt(nodule.sum() / np.pi) if nodule.any() else 0)
    outside = raw & ~ndimage.binary_dilation(nodule, _ball(1))
    near = _sphere(nodule.shape, seed, max(radius, 1) + reach_mm)
    labels, count = ndimage.label(outside & near, structure=FULL)
    if count == 0:
        return 0
    sizes = np.bincount(labels.ravel())[1:]
    return int((sizes >= 3).sum())


def _eq_diameter(voxels: float) -> float:
    """Volume-equivalent diameter (mm) of ``voxels`` 1 mm voxels."""
    return float((6 * float(voxels) / np.pi) ** (1 / 3))


def _sphere(shape: tuple[int, ...], seed: np.ndarray, radius: float) -> np.ndarray:
    zz, yy, xx = np.indices(shape, dtype=np.float32)
    return ((zz - seed[0])**2 + (yy - seed[1])**2 + (xx - seed[2])**2) <= radius**2


def _location(lungs: np.ndarray, center: np.ndarray) -> tuple[str, str, bool]:
    """``(side, lobe, lingula)`` of a point: side from the lung labels, lobe by
    :func:`lobe_of` inside the box of that lung."""
    c = np.clip(np.round(center).astype(int), 0, np.asarray(lungs.shape) - 1)
    label = int(lungs[tuple(c)])
    if label == 0:
        box = _box(center, 12, lungs.shape)
        near = lungs[box]
        if near.any():
            label = int(np.bincount(near[near > 0]).argmax())
    side = "left" if label == 2 else "right" if label == 1 else (
        "left" if center[2] >= lungs.shape[2] / 2 else "right")
    lung = lungs == (2 if side == "left" else 1)
    if not lung.any():
        lung = lungs > 0
    zs = np.nonzero(lung.any(axis=(1, 2)))[0]
    ys = np.nonzero(lung.any(axis=(0, 2)))[0]
    if zs.size == 0:
        return side, "upper" if center[0] >= lungs.shape[0] / 2 else "lower", False
    height = float(np.clip((center[0] - zs.min()) / max(zs.max() - zs.min(), 1), 0, 1))
    depth = float(np.clip((center[1] - ys.min()) / max(ys.max() - ys.min(), 1), 0, 1))
    lobe, lingula = lobe_of(side, height, depth)
    return side, lobe, lingula


def lobe_of(side: str, height: float, depth: float) -> tuple[str, bool]:
    """The lobe at a point of one lung, from its place in that lung's box: ``height`` 0 at the
    base to 1 at the apex, ``depth`` 0 at the front to 1 at the back. Returns ``(lobe,
    lingula)``: behind and below the oblique fissure "lower"; in front of it, above the
    horizontal fissure "upper", below it "middle" on the right and the lingula of the upper
    lobe on the left (the left lung has no middle lobe). An estimate from typical fissure
    positions, not a fissure segmentation."""
    if height < OBLIQUE_POSTERIOR_HEIGHT * depth:
        return "lower", False
    if height >= HORIZONTAL_HEIGHT:
        return "upper", False
    return ("upper", True) if side == "left" else ("middle", False)


def learned_box(learned: tuple[np.ndarray, np.ndarray], shape: tuple[int, ...]
                ) -> tuple[tuple[slice, ...], np.ndarray]:
    """The volume box of a learned ``(mask cube, start)`` clipped to ``shape``, and the mask
    cropped to it."""
    cube, start = learned
    lo = np.maximum(np.asarray(start), 0)
    hi = np.minimum(np.asarray(start) + np.array(cube.shape), shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    part = cube[tuple(slice(int(a - s), int(b - s)) for a, b, s in zip(lo, hi, start,
                                                                       strict=True))]
    return box, part.astype(bool)


def _context(hu: np.ndarray, lungs: np.ndarray, center: np.ndarray, box: tuple[slice, ...],
             diameter: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """A nodule's box: ``(sub HU, seed in the box, lungs in box, where it may grow,
    half-maximum threshold)``."""
    sub = hu[box].astype(np.float32)
    seed = center - np.array([s.start for s in box])
    lung_sub = lungs[box] > 0
    allowed = ndimage.binary_dilation(lung_sub, _ball(1)) if lung_sub.any() else \
        np.ones_like(lung_sub)
    return sub, seed, lung_sub, allowed, half_maximum_threshold(sub, seed, diameter, lung_sub)


def _threshold_nodule(hu: np.ndarray, lungs: np.ndarray, center: np.ndarray, diameter: float
                      ) -> tuple[Any, ...]:
    """The half-maximum threshold growth around ``center`` in a box sized by ``diameter``:
    ``(box, sub HU, seed, lungs in box, allowed, threshold, open radius, mask)``."""
    box = _box(center, int(np.ceil(diameter * 0.9 + 8)), hu.shape)
    sub, seed, lung_sub, allowed, threshold = _context(hu, lungs, center, box, diameter)
    open_radius = max(1, int(round(diameter / 10)))
    radius = diameter * 0.6 + 2
    mask = _grow(sub, seed, radius, allowed, threshold, open_radius)
    if threshold > GROW_HU:
        mask = with_ground_glass(sub, mask, seed, radius, allowed, open_radius)
    return box, sub, seed, lung_sub, allowed, threshold, open_radius, mask


def measure_nodule(hu: np.ndarray, lungs: np.ndarray, center_zyx: tuple[float, float, float],
                   diameter_mm: float, learned: tuple[np.ndarray, np.ndarray] | None = None,
                   type_model: Any | None = None) -> NoduleMeasurement:
    """Segment and measure the nodule a candidate points at (1 mm isotropic grid).

    ``learned``: the segmentation network's ``(mask cube, start index)`` for this candidate
    (:func:`lungcad_inference.segmentation.segment_at`); without it (or when it is empty, or
    when the threshold growth says the lesion is larger than ``LEARNED_MAX_MM``) the nodule is
    grown from the seed at the half-maximum threshold; that growth is not computed when the
    learned outline and ``diameter_mm`` are both at most ``SMALL_MM``. ``type_model``: a fitted
    :class:`lungcad_inference.clinical.nodule_type.TypeModel` for the nodule type (else the
    solid-fraction rule of :func:`classify_type`).
    """
    center = np.asarray(center_zyx, float)
    diameter = max(float(diameter_mm), MIN_DIAMETER_MM)
    usable = learned is not None and learned[0].sum() >= 4
    small = usable and diameter <= SMALL_MM and _eq_diameter(learned[0].sum()) <= SMALL_MM
    if not small:
        box, sub, seed, lung_sub, allowed, threshold, _, mask = _threshold_nodule(
            hu, lungs, center, diameter)
    if small or (usable and _eq_diameter(mask.sum()) <= LEARNED_MAX_MM):
        box, mask = learned_box(learned, hu.shape)
        diameter = max(MIN_DIAMETER_MM, float(max(np.ptp(np.argwhere(mask), 0)) + 1))
        sub, seed, lung_sub, allowed, threshold = _context(hu, lungs, center, box, diameter)
    offset = tuple(int(s.start) for s in box)
    raw = component_at((sub > threshold) & allowed & _sphere(sub.shape, seed,
                                                              diameter / 2 + 6), seed)
    segmented = bool(mask.sum() >= 4)
    if not segmented:
        mask = _sphere(sub.shape, seed, diameter / 2)
    volume = float(mask.sum())  # 1 mm^3 voxels
    mean_hu = float(sub[mask].mean()) if mask.any() else float("nan")
    long_axis, short_axis, key_local = _axial_axes(mask)
    nodule_type, solid_fraction, solid_long, solid_short = classify_type(sub, mask)
    if type_model is not None and mask.any():
        from lungcad_inference.clinical.nodule_type import type_features

        nodule_type = type_model.predict(type_features(sub, mask))[0]
    centroid = np.asarray(ndimage.center_of_mass(mask)) + np.asarray(offset) \
        if mask.any() else center
    side, zone, lingula = _location(lungs, centroid)
    shell = ndimage.binary_dilation(mask, _ball(2)) & ~mask
    outside_dense = shell & ~lung_sub & (sub > -400)
    juxtapleural = bool(outside_dense.sum() > 0.05 * max(shell.sum(), 1))
    strands = count_protrusions(mask, raw, seed, reach_mm=6.0) if segmented else 0
    spiculation = float(np.clip(strands / 8, 0, 1))
    try:
        points = np.argwhere(mask).astype(float)
        hull_volume = ConvexHull(points).volume if len(points) >= 5 else volume
        convexity = float(min(1.0, mask.sum() / max(hull_volume + 0.5 * len(points) ** (2 / 3),
                                                     1)))
    except (QhullError, ValueError):
        convexity = 1.0
    lobulation = float(np.clip(1 - convexity, 0, 1))
    if strands >= SPICULATED_STRANDS and diameter >= 6:
        margin = "spiculated"
    elif lobulation > 0.3 and diameter >= 6:
        margin = "lobulated"
    else:
        margin = "smooth"
    return NoduleMeasurement(
        mask=mask, offset=offset, center_zyx=tuple(float(v) for v in centroid),
        volume_mm3=volume, mean_hu=mean_hu, long_axis_mm=long_axis, short_axis_mm=short_axis,
        key_slice=key_local + offset[0], solid_long_mm=solid_long, solid_short_mm=solid_short,
        solid_fraction=solid_fraction, nodule_type=nodule_type, side=side, zone=zone,
        lingula=lingula,
        juxtapleural=juxtapleural, margin=margin,
        margin_score=spiculation, lobulation=lobulation,
        segmented=segmented)
