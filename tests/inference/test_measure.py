"""Nodule segmentation and measurements on synthetic nodules of known size and shape."""

from __future__ import annotations

import numpy as np
import pytest

from lungcad.findings import Location
from lungcad_inference.clinical.measure import feret_2d, lobe_of, measure_nodule


def chest(shape: tuple[int, int, int] = (80, 120, 160)) -> tuple[np.ndarray, np.ndarray]:
    """A block of lung parenchyma (-850 HU) with two lungs, inside soft tissue."""
    rng = np.random.default_rng(0)
    hu = np.full(shape, 40.0) + rng.normal(0, 10, shape)
    lungs = np.zeros(shape, np.uint8)
    lungs[5:75, 10:110, 10:75] = 1
    lungs[5:75, 10:110, 85:150] = 2
    hu[lungs > 0] = -850 + rng.normal(0, 15, (lungs > 0).sum())
    return hu, lungs


def add_sphere(hu: np.ndarray, center: tuple[float, float, float], radius: float,
               value: float) -> None:
    zz, yy, xx = np.indices(hu.shape)
    inside = (zz - center[0])**2 + (yy - center[1])**2 + (xx - center[2])**2 <= radius**2
    hu[inside] = value


def test_feret_of_a_square_and_a_bar() -> None:
    square = np.zeros((20, 20), bool)
    square[5:15, 5:15] = True
    long_axis, short_axis = feret_2d(square)
    assert long_axis == pytest.approx(10 * np.sqrt(2), rel=1e-6)
    assert short_axis == pytest.approx(10 * np.sqrt(2), rel=1e-6)
    bar = np.zeros((20, 30), bool)
    bar[8:11, 2:22] = True
    long_axis, short_axis = feret_2d(bar)
    assert long_axis == pytest.approx(np.hypot(20, 3), rel=1e-6)
    # The perpendicular to the bar's diagonal crosses it over 2 * area / diagonal.
    assert short_axis == pytest.approx(2 * 20 * 3 / np.hypot(20, 3), rel=1e-6)


@pytest.mark.parametrize("diameter", [6.0, 10.0, 20.0])
def test_solid_sphere_size_volume_and_type(diameter: float) -> None:
    hu, lungs = chest()
    center = (40.0, 60.0, 40.0)
    add_sphere(hu, center, diameter / 2, 30.0)
    m = measure_nodule(hu.astype(np.int16), lungs, center, diameter * 1.2)
    assert m.segmented and m.nodule_type == "solid"
    assert abs(m.long_axis_mm - diameter) <= 1.5
    assert abs(m.short_axis_mm - diameter) <= 1.5
    expected = 4 / 3 * np.pi * (diameter / 2) ** 3
    assert abs(m.volume_mm3 - expected) / expected < 0.25
    assert -60 < m.mean_hu < 60
    assert m.side == "right" and m.zone == "middle" and not m.juxtapleural
    assert m.margin == "smooth"
    assert np.allclose(m.center_zyx, center, atol=0.6)


def test_ground_glass_and_part_solid() -> None:
    hu, lungs = chest()
    add_sphere(hu, (40, 60, 110), 7, -550.0)  # pure ground glass, left lung
    gg = measure_nodule(hu.astype(np.int16), lungs, (40, 60, 110), 14)
    assert gg.nodule_type == "ground-glass" and gg.side == "left"
    hu2, lungs2 = chest()
    add_sphere(hu2, (40, 60, 110), 8, -550.0)
    add_sphere(hu2, (40, 60, 110), 3.5, 20.0)  # solid core
    ps = measure_nodule(hu2.astype(np.int16), lungs2, (40, 60, 110), 16)
    assert ps.nodule_type == "part-solid"
    assert 5 <= ps.solid_long_mm <= 9 and ps.long_axis_mm > 14


def test_zones_and_juxtapleural() -> None:
    hu, lungs = chest()
    add_sphere(hu, (68, 60, 40), 4, 30.0)  # near the apex
    upper = measure_nodule(hu.astype(np.int16), lungs, (68, 60, 40), 8)
    assert upper.zone == "upper"
    hu2, lungs2 = chest()
    add_sphere(hu2, (40, 60, 13), 5, 30.0)  # against the lateral chest wall at x=10
    wall = measure_nodule(hu2.astype(np.int16), lungs2, (40, 60, 13), 10)
    assert wall.juxtapleural


def test_spiculated_nodule_scores_higher_than_smooth() -> None:
    hu, lungs = chest()
    center = (40, 60, 40)
    add_sphere(hu, center, 6, 30.0)
    smooth = measure_nodule(hu.astype(np.int16), lungs, center, 12)
    for direction in [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (0, 1, 1), (1, 0, 1),
                      (-1, 1, 0), (0, -1, 1), (1, 0, -1), (-1, -1, 0), (0, -1, -1), (-1, 0, -1)]:
        d = np.asarray(direction, float) / np.linalg.norm(direction)
        for t in np.arange(5, 12, 0.5):
            p = np.round(np.asarray(center) + d * t).astype(int)
            hu[tuple(p)] = 30.0
    spiky = measure_nodule(hu.astype(np.int16), lungs, center, 12)
    assert spiky.margin_score > smooth.margin_score
    assert spiky.margin == "spiculated"


def test_empty_candidate_falls_back_to_a_sphere() -> None:
    hu, lungs = chest()
    m = measure_nodule(hu.astype(np.int16), lungs, (40, 60, 40), 8)
    assert not m.segmented and m.volume_mm3 > 0


def test_a_learned_outline_replaces_the_threshold_growth() -> None:
    hu, lungs = chest()
    center = (40.0, 60.0, 40.0)
    add_sphere(hu, center, 5.0, 30.0)
    hu[40, 60, 45:60] = 30.0  # a vessel the threshold growth may follow; the outline does not
    cube = np.zeros((32, 32, 32), bool)
    zz, yy, xx = np.indices(cube.shape)
    cube[(zz - 16) ** 2 + (yy - 16) ** 2 + (xx - 16) ** 2 <= 3.0**2] = True  # 6 mm outline
    start = np.array([24, 44, 24])
    m = measure_nodule(hu.astype(np.int16), lungs, center, 12.0, (cube, start))
    assert m.volume_mm3 == cube.sum()
    assert abs(m.long_axis_mm - 6.0) <= 1.5
    assert m.offset == (24, 44, 24) and m.mask.shape == (32, 32, 32)
    fallback = measure_nodule(hu.astype(np.int16), lungs, center, 12.0,
                              (np.zeros((32, 32, 32), bool), start))
    assert fallback.long_axis_mm >= 9.0  # an empty outline: the threshold growth (10 mm ball)


def test_a_mass_beyond_the_learned_range_keeps_the_threshold_growth() -> None:
    hu, lungs = chest()
    center = (40.0, 60.0, 40.0)
    add_sphere(hu, center, 13.0, 30.0)  # 26 mm: beyond the network's validated sizes
    cube = np.zeros((32, 32, 32), bool)
    zz, yy, xx = np.indices(cube.shape)
    cube[(zz - 16) ** 2 + (yy - 16) ** 2 + (xx - 16) ** 2 <= 8.0**2] = True  # under-segmented
    m = measure_nodule(hu.astype(np.int16), lungs, center, 26.0, (cube, np.array([24, 44, 24])))
    assert abs(m.long_axis_mm - 26.0) <= 2.0


@pytest.mark.parametrize(("height", "depth", "right", "left"), [
    (0.9, 0.5, ("upper", False), ("upper", False)),  # apex
    (0.4, 0.2, ("middle", False), ("upper", True)),  # front, mid-height: middle lobe / lingula
    (0.1, 0.05, ("middle", False), ("upper", True)),  # anterior base, above the oblique fissure
    (0.4, 0.9, ("lower", False), ("lower", False)),  # back, mid-height
    (0.05, 0.5, ("lower", False), ("lower", False)),  # base
])
def test_lobe_of_a_point(height: float, depth: float, right: tuple[str, bool],
                         left: tuple[str, bool]) -> None:
    assert lobe_of("right", height, depth) == right
    assert lobe_of("left", height, depth) == left


def test_the_left_lung_has_no_middle_lobe() -> None:
    """A nodule at mid-height in front of the left lung lies in the lingula (left upper lobe);
    the same place on the right is the middle lobe. Before: both read "middle"."""
    hu, lungs = chest()
    add_sphere(hu, (38, 25, 115), 4, 30.0)  # left lung, front, mid-height
    add_sphere(hu, (38, 25, 40), 4, 30.0)  # right lung, same place
    left = measure_nodule(hu.astype(np.int16), lungs, (38, 25, 115), 8)
    right = measure_nodule(hu.astype(np.int16), lungs, (38, 25, 40), 8)
    assert (left.side, left.zone, left.lingula) == ("left", "upper", True)
    assert (right.side, right.zone, right.lingula) == ("right", "middle", False)
    grid = [lobe_of("left", h, d) for h in np.linspace(0, 1, 21) for d in np.linspace(0, 1, 21)]
    assert {lobe for lobe, _ in grid} == {"upper", "lower"}


def test_location_in_words() -> None:
    assert Location(side="left", zone="upper", lingula=True, juxtapleural=True).text() == \
        "left upper lobe (lingula), juxtapleural"
    assert Location(side="right", zone="middle", juxtapleural=False).text() == \
        "right middle lobe"
