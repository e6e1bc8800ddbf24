"""The slices of the original DICOM series, to map any LPS point back to a slice and pixel.

Kept beside every preprocessed volume so a finding reports the SOPInstanceUID (and frame, for
multi-frame objects) of the original slice that contains it, and its (row, column) there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SliceHit:
    index: int  # position of the slice in the sorted stack (0 = lowest along the normal)
    sop_instance_uid: str
    frame_number: int | None  # 1-based frame of a multi-frame object, else None
    row: float
    column: float
    distance_mm: float  # distance of the point from the slice plane
    instance_number: int | None = None  # the slice's InstanceNumber (the image number on PACS)


@dataclass(frozen=True)
class SliceTable:
    """Per-slice UIDs, InstanceNumbers and ImagePositionPatient, sorted along the slice normal.

    ``positions`` is ``(N, 3)`` LPS mm; ``row_direction`` / ``column_direction`` are the
    ImageOrientationPatient cosines; ``pixel_spacing`` is DICOM's (between rows, between columns).
    """

    sop_instance_uids: tuple[str, ...]
    frame_numbers: tuple[int | None, ...]
    positions: tuple[tuple[float, float, float], ...]
    row_direction: tuple[float, float, float]
    column_direction: tuple[float, float, float]
    pixel_spacing: tuple[float, float]
    slice_thickness_mm: float | None = None
    instance_numbers: tuple[int | None, ...] = ()  # per slice; empty for older tables

    @property
    def normal(self) -> np.ndarray:
        n = np.cross(self.row_direction, self.column_direction)
        return n / np.linalg.norm(n)

    @property
    def offsets_mm(self) -> np.ndarray:
        """Position of every slice along the normal (ascending)."""
        return np.asarray(self.positions, float) @ self.normal

    def __len__(self) -> int:
        return len(self.sop_instance_uids)

    def locate(self, point_xyz: Any) -> SliceHit:
        """The slice nearest to an LPS point, and the point's (row, column) on it."""
        p = np.asarray(point_xyz, float)
        offsets = self.offsets_mm
        k = int(np.argmin(np.abs(offsets - p @ self.normal)))
        rel = p - np.asarray(self.positions[k], float)
        row = float(rel @ np.asarray(self.column_direction)) / self.pixel_spacing[0]
        column = float(rel @ np.asarray(self.row_direction)) / self.pixel_spacing[1]
        return SliceHit(k, self.sop_instance_uids[k], self.frame_numbers[k], row=row,
                        column=column, distance_mm=float(abs(rel @ self.normal)),
                        instance_number=self.instance_number(k))

    def instance_number(self, k: int) -> int | None:
        """InstanceNumber of slice ``k`` (None when the series did not carry it)."""
        return self.instance_numbers[k] if k < len(self.instance_numbers) else None

    def to_dict(self) -> dict[str, Any]:
        return {"sop_instance_uids": list(self.sop_instance_uids),
                "frame_numbers": list(self.frame_numbers),
                "image_position_patient": [list(p) for p in self.positions],
                "row_direction": list(self.row_direction),
                "column_direction": list(self.column_direction),
                "pixel_spacing": list(self.pixel_spacing),
                "slice_thickness_mm": self.slice_thickness_mm,
                "instance_numbers": list(self.instance_numbers)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SliceTable:
        return cls(tuple(data["sop_instance_uids"]), tuple(data["frame_numbers"]),
                   tuple(tuple(p) for p in data["image_position_patient"]),
                   tuple(data["row_direction"]), tuple(data["column_direction"]),
                   tuple(data["pixel_spacing"]), data.get("slice_thickness_mm"),
                   tuple(data.get("instance_numbers") or ()))
