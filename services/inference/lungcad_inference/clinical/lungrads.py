"""Lung-RADS v2022 categories for a baseline screening CT (no prior study).

Sizes are mean diameters, ``(long + short) / 2`` on the same axial image, rounded to 0.1 mm, as
v2022 specifies. Only the baseline rules apply: LungCAD sees one study at a time, so growth
(new, growing, slowly growing) cannot be assessed and is stated in the rule text.

    solid:       < 6 -> 2;  6 to < 8 -> 3;  8 to < 15 -> 4A;  >= 15 -> 4B
    part-solid:  total < 6 -> 2;  total >= 6 and solid < 6 -> 3;
                 solid 6 to < 8 -> 4A;  solid >= 8 -> 4B
    ground-glass: < 30 -> 2;  >= 30 -> 3
    juxtapleural/perifissural solid, smooth, < 10 mm -> 2
    calcified (benign pattern) or fat-containing -> 1
    3 or 4 with additional suspicious features (spiculation) -> 4X
    no nodules -> 1;  lungs not fully imaged -> 0
"""

from __future__ import annotations

from dataclasses import dataclass

ORDER = ["0", "1", "2", "3", "4A", "4B", "4X"]


@dataclass(frozen=True)
class NoduleForRads:
    long_axis_mm: float
    short_axis_mm: float
    nodule_type: str  # solid | part-solid | ground-glass
    solid_long_mm: float = 0.0
    solid_short_mm: float = 0.0
    juxtapleural: bool = False
    smooth: bool = True
    spiculated: bool = False
    calcified: bool = False


@dataclass(frozen=True)
class RadsResult:
    category: str
    rule: str


def mean_diameter(long_mm: float, short_mm: float) -> float:
    return round((long_mm + short_mm) / 2 + 1e-9, 1)


def _base(n: NoduleForRads) -> RadsResult:
    size = mean_diameter(n.long_axis_mm, n.short_axis_mm)
    if n.calcified:
        return RadsResult("1", "nodule with a benign calcification pattern")
    if n.nodule_type == "ground-glass":
        if size < 30:
            return RadsResult("2", f"ground-glass nodule < 30 mm ({size} mm)")
        return RadsResult("3", f"ground-glass nodule >= 30 mm ({size} mm)")
    if n.nodule_type == "part-solid":
        solid = mean_diameter(n.solid_long_mm, n.solid_short_mm)
        if size < 6:
            return RadsResult("2", f"part-solid nodule < 6 mm total ({size} mm)")
        if solid < 6:
            return RadsResult("3", f"part-solid nodule >= 6 mm total ({size} mm) with solid "
                                   f"component < 6 mm ({solid} mm)")
        if solid < 8:
            return RadsResult("4A", f"part-solid nodule with solid component 6 to < 8 mm "
                                    f"({solid} mm)")
        return RadsResult("4B", f"part-solid nodule with solid component >= 8 mm ({solid} mm)")
    if n.juxtapleural and n.smooth and size < 10:
        return RadsResult("2", f"juxtapleural solid nodule < 10 mm with smooth margins "
                               f"({size} mm)")
    if size < 6:
        return RadsResult("2", f"solid nodule < 6 mm at baseline ({size} mm)")
    if size < 8:
        return RadsResult("3", f"solid nodule 6 to < 8 mm at baseline ({size} mm)")
    if size < 15:
        return RadsResult("4A", f"solid nodule 8 to < 15 mm at baseline ({size} mm)")
    return RadsResult("4B", f"solid nodule >= 15 mm at baseline ({size} mm)")


def classify_nodule(n: NoduleForRads) -> RadsResult:
    result = _base(n)
    if result.category in ("3", "4A", "4B") and n.spiculated:
        return RadsResult("4X", f"category {result.category} ({result.rule}) with spiculation, "
                                "an additional feature that increases suspicion")
    return result


def classify_case(nodules: list[RadsResult], lungs_fully_imaged: bool = True) -> RadsResult:
    """The case category is that of its most suspicious nodule."""
    if not lungs_fully_imaged:
        return RadsResult("0", "part of the lungs is not imaged; the study is incomplete")
    if not nodules:
        return RadsResult("1", "no lung nodules found")
    worst = max(nodules, key=lambda r: ORDER.index(r.category))
    return RadsResult(worst.category, f"most suspicious nodule: {worst.rule}")
