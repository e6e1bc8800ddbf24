"""The reference-lesion record shared by every reader."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Lesion:
    """A reference lesion in patient LPS millimetres.

    ``centre_mm`` is ``(x, y, z)`` LPS; ``diameter_mm`` the reference diameter (the radius of the
    LUNA16 hit criterion is half of it); ``malignancy`` the binarised label (1 malignant,
    0 benign, ``None`` excluded or unknown); ``source`` names the reader (``lidc_xml``,
    ``luna16``, ``dicom_seg``, ``voi``).
    """

    centre_mm: tuple[float, float, float]
    diameter_mm: float
    source: str
    malignancy: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"centre_mm": list(self.centre_mm), "diameter_mm": self.diameter_mm,
                "source": self.source, "malignancy": self.malignancy, **self.extra}
