"""A second, coarse detector pass for masses too large for the full-resolution pass.

The detector is trained on 64 mm patches with lesions of 3-50 mm; a 40-80 mm tumour fills or
overflows that field of view and the full-resolution pass may not respond to it at all (the
model card's misses). The same network run on the volume halved to 2 mm voxels sees such a
mass at half its size, inside its training range. Pure functions on ``(z, y, x)`` arrays:

- :func:`halve` averages (HU) or takes the maximum (lung labels) of 2x2x2 blocks;
- :func:`coarse_candidates` maps the coarse pass's candidates back to the 1 mm grid and keeps
  those of at least ``min_diameter_mm`` (20 mm: at 2 mm voxels they look 10 mm or larger,
  the middle of the training range; smaller lesions are the full-resolution pass's) whose
  centre lies within their own radius of the lung mask (a mass at the pleura or the
  mediastinum may push its centre out of the lung; at least 8 mm, as the fine pass);
- :func:`merge` joins the two lists; where a fine and a coarse candidate overlap (within the
  larger radius) the higher-scoring one stands for the lesion, so it is reported once (with
  the fine candidate's more precise centre and size when both describe the same lesion).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from lungcad_inference.decode import RawCandidate, overlaps

COARSE_MIN_MM = 20.0
LUNG_MARGIN_MM = 8.0


def halve(volume: np.ndarray, how: str = "mean") -> np.ndarray:
    """``volume`` on a grid of 2x2x2 blocks (odd edges repeated): block mean as float32
    (``how="mean"``) or block maximum in the input dtype (``how="max"``)."""
    if how not in ("mean", "max"):
        raise ValueError(f"halve: how must be 'mean' or 'max', got {how!r}")
    pad = [(0, n % 2) for n in volume.shape]
    v = np.pad(volume, pad, mode="edge") if any(p[1] for p in pad) else volume
    # the eight strided corners of the 2x2x2 blocks (a reshape-and-reduce is 3-5x slower)
    corners = [v[a::2, b::2, c::2] for a in (0, 1) for b in (0, 1) for c in (0, 1)]
    if how == "mean":
        out = corners[0].astype(np.float32)
        for corner in corners[1:]:
            out += corner
        out *= 0.125
        return out
    out = corners[0].copy()
    for corner in corners[1:]:
        np.maximum(out, corner, out=out)
    return out


def coarse_candidates(raw: list[RawCandidate], lungs_half: np.ndarray, *,
                      min_diameter_mm: float = COARSE_MIN_MM,
                      lung_margin_mm: float = LUNG_MARGIN_MM) -> list[RawCandidate]:
    """Candidates decoded on the halved grid (centres in half-grid voxels, diameters in
    half-grid voxels) -> 1 mm grid candidates of at least ``min_diameter_mm`` whose centre is
    within ``max(lung_margin_mm, diameter / 2)`` of ``lungs_half`` (labels on the halved
    grid)."""
    if not raw:
        return []
    lung = lungs_half > 0
    if not lung.any():
        return []
    outside_mm = ndimage.distance_transform_edt(~lung) * 2.0
    out = []
    for r in raw:
        diameter = 2.0 * r.diameter_mm
        if diameter < min_diameter_mm:
            continue
        k = np.clip(np.rint(r.centre_zyx).astype(int), 0, np.array(lung.shape) - 1)
        if outside_mm[tuple(k)] > max(lung_margin_mm, diameter / 2):
            continue
        out.append(RawCandidate(np.asarray(r.centre_zyx, float) * 2.0 + 0.5, diameter,
                                r.score))
    return out


def merge(fine: list[RawCandidate], coarse: list[RawCandidate]) -> list[RawCandidate]:
    """One list, highest score first: where a fine and a coarse candidate overlap (centres
    closer than the larger radius) only the higher-scoring one is kept (greedy suppression
    between the passes; each pass is already suppressed within itself by ``decode``). A kept
    coarse candidate takes the centre and diameter of the best fine candidate it suppressed
    when that one is at least half its diameter (the same lesion seen at 1 mm, not a fragment
    of a mass): the 1 mm pass places and sizes a lesion more precisely."""
    pool = sorted([(r, False) for r in fine] + [(r, True) for r in coarse],
                  key=lambda rc: -rc[0].score)
    kept: list[tuple[RawCandidate, bool]] = []
    suppressed: list[RawCandidate] = []
    for r, is_coarse in pool:
        if any(kc != is_coarse and overlaps(r, k) for k, kc in kept):
            if not is_coarse:
                suppressed.append(r)
            continue
        kept.append((r, is_coarse))
    out = []
    for r, is_coarse in kept:
        same = [f for f in suppressed if is_coarse and overlaps(r, f)
                and f.diameter_mm >= r.diameter_mm / 2]
        if same:
            best = max(same, key=lambda f: f.score)
            r = RawCandidate(np.asarray(best.centre_zyx, float), best.diameter_mm, r.score)
        out.append(r)
    return out
