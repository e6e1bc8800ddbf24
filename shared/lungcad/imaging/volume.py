"""A volume is an array indexed ``(z, y, x)`` plus the :class:`Geometry` that places it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lungcad.imaging.geometry import Geometry


@dataclass(frozen=True)
class Volume:
    """``array`` (z, y, x) sampled on ``geometry``; values are HU for CT, labels for masks."""

    array: np.ndarray
    geometry: Geometry

    def __post_init__(self) -> None:
        if tuple(self.array.shape) != self.geometry.shape:
            raise ValueError(f"array shape {self.array.shape} != geometry {self.geometry.shape}")

    def to_sitk(self) -> Any:
        """A SimpleITK image sharing nothing with ``array`` (ITK sees it as (x, y, z))."""
        import SimpleITK as sitk

        image = sitk.GetImageFromArray(np.ascontiguousarray(self.array))
        return self.geometry.apply_to_sitk(image)

    @classmethod
    def from_sitk(cls, image: Any, dtype: Any = None) -> Volume:
        import SimpleITK as sitk

        array = sitk.GetArrayFromImage(image)
        if dtype is not None:
            array = array.astype(dtype, copy=False)
        return cls(array, Geometry.from_sitk(image))
