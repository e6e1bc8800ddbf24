"""Resampling between grids with SimpleITK's multithreaded resampler.

Output grids are canonical: identity direction (array axes ``(z, y, x)`` run inferior->superior,
anterior->posterior, right->left in LPS) and isotropic spacing, covering the input's extent.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lungcad.imaging import Geometry, Volume


def canonical_grid(geometry: Geometry, spacing_mm: float = 1.0) -> Geometry:
    """An identity-direction isotropic grid covering every voxel centre of ``geometry``."""
    corners = geometry.corners_world()
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    shape_xyz = [max(1, math.floor((h - lo_) / spacing_mm + 1e-6) + 1)
                 for lo_, h in zip(lo, hi, strict=True)]
    return Geometry(tuple(shape_xyz[::-1]), (spacing_mm,) * 3, tuple(lo))


def box_grid(lo_xyz: np.ndarray, hi_xyz: np.ndarray, spacing_mm: float) -> Geometry:
    """An identity-direction grid from LPS ``lo`` to at least ``hi`` (voxel centres)."""
    shape_xyz = [max(1, math.ceil((h - lo_) / spacing_mm - 1e-6) + 1)
                 for lo_, h in zip(lo_xyz, hi_xyz, strict=True)]
    return Geometry(tuple(shape_xyz[::-1]), (spacing_mm,) * 3, tuple(float(v) for v in lo_xyz))


def resample(volume: Volume | Any, target: Geometry, *, nearest: bool = False,
             default: float = -1024.0, threads: int = 0) -> np.ndarray:
    """Sample ``volume`` on ``target`` and return the ``(z, y, x)`` array.

    ``volume`` is a :class:`Volume` or an already converted SimpleITK image (convert once when
    resampling the same volume twice). Linear interpolation in float32 (nearest neighbour for
    label maps, keeping the dtype). Points outside get ``default``; ``threads`` 0: SimpleITK's.
    """
    import SimpleITK as sitk

    image = volume.to_sitk() if isinstance(volume, Volume) else volume
    f = sitk.ResampleImageFilter()
    f.SetSize(tuple(target.shape[::-1]))
    f.SetOutputSpacing(tuple(target.spacing[::-1]))
    f.SetOutputOrigin(target.origin)
    f.SetOutputDirection(target.direction)
    f.SetDefaultPixelValue(default)
    f.SetInterpolator(sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear)
    f.SetOutputPixelType(image.GetPixelID() if nearest else sitk.sitkFloat32)
    if threads:
        f.SetNumberOfThreads(threads)
    return sitk.GetArrayFromImage(f.Execute(image))


def to_int16_hu(array: np.ndarray) -> np.ndarray:
    """Round float HU to int16, clipping to [-1024, 32767]."""
    out = np.rint(array, out=array if array.dtype == np.float32 else None)
    return np.clip(out, -1024, 32767, out=out).astype(np.int16)
