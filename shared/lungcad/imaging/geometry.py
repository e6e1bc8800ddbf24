"""The sampling grid of a volume: where every voxel lies in patient space.

Conventions (stated once, used everywhere):

* array index order is numpy's ``(z, y, x)`` = (slice k, row j, column i);
* ``shape`` and ``spacing`` follow the array order ``(z, y, x)``;
* ``origin`` is the LPS position in mm ``(x, y, z)`` of the centre of voxel ``[0, 0, 0]``;
* ``direction`` is a 3x3 matrix in ITK convention: column ``c`` is the LPS unit vector along ITK
  index axis ``c`` (c = 0: column i / numpy axis 2, 1: row j / axis 1, 2: slice k / axis 0).
  It need not be orthogonal (a gantry-tilted DICOM stack is sheared).

So ``world = origin + direction @ (spacing_xyz * index_xyz)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Triple = tuple[float, float, float]
IntTriple = tuple[int, int, int]

IDENTITY: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def _triple(values: Sequence[float]) -> Triple:
    if len(values) != 3:
        raise ValueError(f"expected 3 values, got {len(values)}")
    return (float(values[0]), float(values[1]), float(values[2]))


@dataclass(frozen=True)
class Geometry:
    """A regular 3-D grid in patient LPS space (see the module docstring for axis order)."""

    shape: IntTriple
    spacing: Triple
    origin: Triple
    direction: tuple[float, ...] = IDENTITY

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))
        object.__setattr__(self, "spacing", _triple(self.spacing))
        object.__setattr__(self, "origin", _triple(self.origin))
        direction = tuple(float(v) for v in np.asarray(self.direction, dtype=float).ravel())
        if len(direction) != 9:
            raise ValueError("direction must have 9 values (3x3, ITK row-major)")
        object.__setattr__(self, "direction", direction)
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ValueError(f"shape must be 3 positive ints (z, y, x), got {self.shape}")
        if min(self.spacing) <= 0:
            raise ValueError(f"spacing must be positive, got {self.spacing}")
        if abs(np.linalg.det(self.direction_matrix)) < 1e-6:
            raise ValueError("direction matrix is singular")

    # -- matrices -----------------------------------------------------------------------------
    @property
    def direction_matrix(self) -> np.ndarray:
        """3x3 ITK direction (columns: LPS unit vectors of index axes i, j, k)."""
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    @property
    def spacing_xyz(self) -> np.ndarray:
        return np.asarray(self.spacing[::-1], dtype=float)

    @property
    def affine(self) -> np.ndarray:
        """4x4 matrix mapping homogeneous ``(z, y, x, 1)`` array indices to LPS ``(x, y, z, 1)``."""
        m = self.direction_matrix * self.spacing_xyz  # columns scaled: index (i, j, k) -> mm
        out = np.eye(4)
        out[:3, :3] = m[:, ::-1]  # reorder columns to index order (k, j, i) = (z, y, x)
        out[:3, 3] = self.origin
        return out

    @property
    def slice_normal(self) -> np.ndarray:
        """Unit normal of the (row, column) plane, ``row_dir x col_dir`` in LPS."""
        d = self.direction_matrix
        n = np.cross(d[:, 0], d[:, 1])
        return n / np.linalg.norm(n)

    @property
    def is_orthogonal(self) -> bool:
        d = self.direction_matrix
        return bool(np.allclose(d.T @ d, np.eye(3), atol=1e-4))

    @property
    def voxel_volume_ml(self) -> float:
        d = self.direction_matrix
        return float(abs(np.linalg.det(d)) * np.prod(self.spacing) / 1000.0)

    # -- conversions ---------------------------------------------------------------------------
    def index_to_world(self, index_zyx: Any) -> np.ndarray:
        """Continuous ``(..., 3)`` indices ``(z, y, x)`` -> LPS mm ``(..., 3)`` ``(x, y, z)``."""
        idx = np.asarray(index_zyx, dtype=float)
        a = self.affine
        return idx @ a[:3, :3].T + a[:3, 3]

    def world_to_index(self, point_xyz: Any) -> np.ndarray:
        """LPS mm ``(..., 3)`` ``(x, y, z)`` -> continuous indices ``(..., 3)`` ``(z, y, x)``."""
        p = np.asarray(point_xyz, dtype=float)
        a = self.affine
        return (p - a[:3, 3]) @ np.linalg.inv(a[:3, :3]).T

    def world_to_voxel(self, point_xyz: Any) -> np.ndarray:
        """Nearest integer ``(z, y, x)`` voxel for LPS points (may lie outside the grid)."""
        return np.rint(self.world_to_index(point_xyz)).astype(np.int64)

    def contains_index(self, index_zyx: Any) -> np.ndarray:
        idx = np.asarray(index_zyx)
        upper = np.asarray(self.shape) - 0.5
        return np.all((idx >= -0.5) & (idx < upper), axis=-1)

    def corners_world(self) -> np.ndarray:
        """LPS ``(8, 3)`` centres of the eight corner voxels."""
        nz, ny, nx = (n - 1 for n in self.shape)
        corners = [(z, y, x) for z in (0, nz) for y in (0, ny) for x in (0, nx)]
        return self.index_to_world(np.asarray(corners, dtype=float))

    def crop(self, start_zyx: Sequence[int], stop_zyx: Sequence[int]) -> Geometry:
        """The geometry of ``array[start[0]:stop[0], start[1]:stop[1], start[2]:stop[2]]``."""
        start = np.asarray(start_zyx, dtype=int)
        stop = np.asarray(stop_zyx, dtype=int)
        if np.any(start < 0) or np.any(stop > np.asarray(self.shape)) or np.any(stop <= start):
            raise ValueError(f"crop box {tuple(start)}..{tuple(stop)} outside grid {self.shape}")
        origin = self.index_to_world(start.astype(float))
        return Geometry(tuple(int(v) for v in stop - start), self.spacing, tuple(origin),
                        self.direction)

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"shape_zyx": list(self.shape), "spacing_zyx_mm": list(self.spacing),
                "origin_lps_mm": list(self.origin), "direction_itk": list(self.direction)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Geometry:
        return cls(tuple(data["shape_zyx"]), tuple(data["spacing_zyx_mm"]),
                   tuple(data["origin_lps_mm"]), tuple(data["direction_itk"]))

    # -- SimpleITK (the one place where (x, y, z) <-> (z, y, x) is converted) -----------------
    @classmethod
    def from_sitk(cls, image: Any) -> Geometry:
        """Geometry of a SimpleITK image (whose size and spacing are in ITK ``(x, y, z)``)."""
        size = image.GetSize()
        return cls(tuple(size[::-1]), tuple(image.GetSpacing()[::-1]), image.GetOrigin(),
                   image.GetDirection())

    def apply_to_sitk(self, image: Any) -> Any:
        """Set spacing, origin and direction of a SimpleITK image whose array is ``shape``."""
        if tuple(image.GetSize()[::-1]) != self.shape:
            raise ValueError(f"image size {image.GetSize()} (x,y,z) does not match {self.shape}")
        image.SetSpacing(tuple(self.spacing[::-1]))
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image
