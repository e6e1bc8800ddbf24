"""Lung-RADS v2022 baseline table, row by row, with its boundaries."""

from __future__ import annotations

import pytest

from lungcad_inference.clinical.lungrads import (
    NoduleForRads,
    RadsResult,
    classify_case,
    classify_nodule,
    mean_diameter,
)


def solid(long: float, short: float | None = None, **kw: object) -> NoduleForRads:
    return NoduleForRads(long, long if short is None else short, "solid", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("size", "category"), [
    (3.0, "2"), (5.9, "2"), (6.0, "3"), (7.9, "3"), (8.0, "4A"), (14.9, "4A"), (15.0, "4B"),
    (40.0, "4B")])
def test_solid_baseline(size: float, category: str) -> None:
    assert classify_nodule(solid(size)).category == category


def test_mean_diameter_uses_long_and_short_axis_rounded() -> None:
    assert mean_diameter(7.0, 5.0) == 6.0
    assert classify_nodule(solid(7.0, 5.0)).category == "3"
    assert mean_diameter(6.5, 5.4) == 6.0  # 5.95 rounds up to 6.0 -> category 3
    assert classify_nodule(solid(6.5, 5.4)).category == "3"
    assert classify_nodule(solid(6.4, 5.4)).category == "2"  # 5.9


@pytest.mark.parametrize(("total", "solid_part", "category"), [
    (5.0, 3.0, "2"), (6.0, 0.0, "3"), (12.0, 5.9, "3"), (12.0, 6.0, "4A"), (12.0, 7.9, "4A"),
    (12.0, 8.0, "4B")])
def test_part_solid_baseline(total: float, solid_part: float, category: str) -> None:
    nodule = NoduleForRads(total, total, "part-solid", solid_part, solid_part)
    assert classify_nodule(nodule).category == category


@pytest.mark.parametrize(("size", "category"), [(10.0, "2"), (29.9, "2"), (30.0, "3")])
def test_ground_glass_baseline(size: float, category: str) -> None:
    assert classify_nodule(NoduleForRads(size, size, "ground-glass")).category == category


def test_juxtapleural_smooth_solid_under_10mm_is_benign() -> None:
    assert classify_nodule(solid(9.0, juxtapleural=True)).category == "2"
    assert classify_nodule(solid(9.0, juxtapleural=True, smooth=False)).category == "4A"
    assert classify_nodule(solid(10.0, juxtapleural=True)).category == "4A"


def test_spiculation_upgrades_3_and_4_to_4x_only() -> None:
    assert classify_nodule(solid(7.0, spiculated=True)).category == "4X"
    assert classify_nodule(solid(20.0, spiculated=True)).category == "4X"
    assert classify_nodule(solid(4.0, spiculated=True)).category == "2"
    assert "spiculation" in classify_nodule(solid(9.0, spiculated=True)).rule


def test_calcified_nodule_is_category_1() -> None:
    assert classify_nodule(solid(12.0, calcified=True)).category == "1"


def test_case_takes_the_most_suspicious_nodule() -> None:
    assert classify_case([]).category == "1"
    assert classify_case([RadsResult("2", "a"), RadsResult("4A", "b"),
                          RadsResult("3", "c")]).category == "4A"
    assert classify_case([RadsResult("4B", "a"), RadsResult("4X", "b")]).category == "4X"
    assert classify_case([RadsResult("2", "a")], lungs_fully_imaged=False).category == "0"
