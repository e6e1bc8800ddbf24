"""The original-series reading mode's reading tools in headless Chromium, on the synthetic case:
calipers in mm from PixelSpacing (row spacing first), a slab MIP over the native images by
their positions, orientation letters from ImageOrientationPatient and a scale bar.

Expected values come from the series geometry (GET /viewer/original), its native pixels and
the canvas box, not from the viewer. The image number shown for a finding is checked in
test_dashboard_original.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lungcad.findings import Finding
from lungcad_preprocess.pipeline import Preprocessed
from tests.conftest import Gateway
from tests.frontend.conftest import Case
from tests.frontend.test_dashboard_browser import open_case, sign_in
from tests.frontend.test_dashboard_original import (
    PANE,
    PIXELS_JS,
    native_place,
    screen_place,
    series_of,
    wait_image,
)
from tests.frontend.test_viewer_api import inflate_npy

SLAB_MM = 10.0
NODULE_RADIUS_MM = 5.0  # the phantom's isolated solid nodule (its first) is 10 mm across


def solid_nodule(case: Case, study: tuple[Path, Preprocessed]) -> tuple[Finding, np.ndarray]:
    """The finding at the phantom's isolated 10 mm solid nodule, and the nodule's true centre."""
    centre = np.asarray(study[1].meta["test_nodules"][0][0], float)
    finding = min(case.document.findings, key=lambda f: float(np.linalg.norm(
        np.asarray(f.center_mm) - centre)))
    return finding, centre


def to_world(series: dict[str, Any], k: int, column: float, row: float) -> np.ndarray:
    """LPS mm of (column, row), pixel-centre units, on image k."""
    iop = np.asarray(series["image_orientation_patient"], float)
    row_mm, col_mm = series["pixel_spacing"]
    ipp = np.asarray(series["images"][k]["image_position_patient"], float)
    return ipp + column * col_mm * iop[:3] + row * row_mm * iop[3:]


def depths(series: dict[str, Any], point: np.ndarray) -> np.ndarray:
    """Signed distance (mm) of each image from a point, along the slice normal."""
    iop = np.asarray(series["image_orientation_patient"], float)
    normal = np.cross(iop[:3], iop[3:])
    return np.asarray([(np.asarray(i["image_position_patient"], float) - point) @ normal
                       for i in series["images"]])


def page_point(page: Any, x: float, y: float) -> tuple[float, float]:
    box = page.locator(f"{PANE} canvas").bounding_box()
    return box["x"] + x, box["y"] + y


def drag(page: Any, start: tuple[float, float], end: tuple[float, float]) -> None:
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=6)
    page.mouse.up()


def wait_attribute(page: Any, name: str, value: str | None) -> None:
    page.wait_for_function(
        "([name, value]) => document.querySelector('.pane-original').getAttribute(name) === value",
        arg=[name, value])


def red_around(page: Any, x: float, y: float, reach: int = 2) -> np.ndarray:
    """The red channel of the canvas (grey image) around a canvas point."""
    return np.asarray(page.evaluate(PIXELS_JS, [round(x), round(y), reach]), int)[::4]


def with_series(page: Any, **changes: Any) -> None:
    """Serve the original series' metadata with some fields changed (the pixels unchanged)."""
    def change(route: Any) -> None:
        response = route.fetch()
        route.fulfill(response=response, json={**response.json(), **changes})

    page.route(lambda url: url.endswith("/viewer/original"), change)


def test_bidirectional_calipers_measure_a_finding_in_mm(
        page: Any, dashboard: tuple[Gateway, Case],
        synthetic_study: tuple[Path, Preprocessed], artifacts_dir: Path) -> None:
    gateway, case = dashboard
    series = series_of(gateway, case.job_id)
    numbers = [image["instance_number"] for image in series["images"]]
    finding, _ = solid_nodule(case, synthetic_study)
    row_mm, col_mm = series["pixel_spacing"]
    sign_in(page, gateway)
    open_case(page, case.job_id, view="original")
    page.locator(f'tr[data-finding="{finding.id}"]').click()
    wait_image(page, finding.instance_number)
    k = numbers.index(finding.instance_number)
    column, row, _ = native_place(series, k, finding.center_mm)
    x, y, per_mm = screen_place(page, series, column, row)
    cx, cy = page_point(page, x, y)

    tool = page.get_by_role("button", name="Bidirectional", exact=True)
    assert tool.is_enabled()
    tool.click()
    radius_px = finding.diameter_mm / 2 * per_mm  # edge to edge across the finding, along a row
    drag(page, (cx - radius_px, cy), (cx + radius_px, cy))
    page.wait_for_function("() => document.querySelector('.pane-original').dataset.measureMm")
    pane = page.locator(PANE)
    long_mm = float(pane.get_attribute("data-measure-mm"))
    assert abs(long_mm - finding.diameter_mm) <= 1, (long_mm, finding.diameter_mm)

    # the short axis drawn askew (11.3 mm as dragged) is kept perpendicular: 8 mm down a column
    step = 4 * per_mm
    drag(page, (cx - step, cy - step), (cx + step, cy + step))
    page.wait_for_function(
        "() => document.querySelector('.pane-original').dataset.measureShortMm")
    short_mm = float(pane.get_attribute("data-measure-short-mm"))
    assert abs(short_mm - 8.0) <= 1, short_mm

    item = page.locator(".measurements li")
    assert item.count() == 1
    assert item.inner_text() == (f"Image {finding.instance_number} ({k + 1} of {len(numbers)}): "
                                 f"{long_mm:.1f} × {short_mm:.1f} mm")
    assert item.get_attribute("data-image") == str(finding.instance_number)
    assert item.get_attribute("data-sop-instance-uid") == series["images"][k]["sop_instance_uid"]
    lps = json.loads(item.get_attribute("data-lps"))
    half_columns = finding.diameter_mm / 2 / col_mm
    expected_long = [to_world(series, k, column - half_columns, row),
                     to_world(series, k, column + half_columns, row)]
    expected_short = [to_world(series, k, column - 4 / col_mm, row - 4 / row_mm),
                      to_world(series, k, column - 4 / col_mm, row + 4 / row_mm)]
    assert np.allclose(lps["long"], expected_long, atol=1.0), (lps, expected_long)
    assert np.allclose(lps["short"], expected_short, atol=1.0), (lps, expected_short)
    page.screenshot(path=artifacts_dir / "original-calipers.png")

    page.get_by_role("button", name="Clear measurements").click()
    wait_attribute(page, "data-measure-mm", None)
    assert page.locator(".measurements li").count() == 0
    assert page.errors == []


def test_calipers_take_pixel_spacing_as_rows_then_columns(
        page: Any, dashboard: tuple[Gateway, Case]) -> None:
    gateway, case = dashboard
    series = {**series_of(gateway, case.job_id), "pixel_spacing": [1.8, 0.9]}
    with_series(page, pixel_spacing=series["pixel_spacing"])  # rows 1.8 mm, columns 0.9 mm apart
    sign_in(page, gateway)
    open_case(page, case.job_id, view="original")
    page.get_by_role("button", name="Measure", exact=True).click()
    x, y, per_mm = screen_place(page, series, series["columns"] / 2, series["rows"] / 2)
    cx, cy = page_point(page, x, y)
    pane = page.locator(PANE)
    for end in ((cx + 120, cy), (cx, cy + 120)):  # along a row, then down a column
        drag(page, (cx, cy), end)
        page.wait_for_function(
            "mm => Math.abs(Number(document.querySelector('.pane-original').dataset.measureMm)"
            " - mm) < 0.5", arg=120 / per_mm)
    assert abs(float(pane.get_attribute("data-measure-mm")) - 120 / per_mm) < 0.5
    assert page.errors == []


def test_slab_mip_shows_a_nodule_of_a_neighbouring_image(
        page: Any, dashboard: tuple[Gateway, Case],
        synthetic_study: tuple[Path, Preprocessed]) -> None:
    gateway, case = dashboard
    series = series_of(gateway, case.job_id)
    numbers = [image["instance_number"] for image in series["images"]]
    finding, centre = solid_nodule(case, synthetic_study)
    with gateway.client() as client:
        stack = inflate_npy(client.get(series["pixels_url"]).content)
    # the nearest image that misses the nodule, and the slab of images around it (by position)
    d = depths(series, centre)
    k = min((i for i in range(len(d)) if abs(d[i]) > NODULE_RADIUS_MM + 0.5),
            key=lambda i: abs(d[i]))
    slab = [i for i in range(len(d)) if abs(d[i] - d[k]) <= SLAB_MM / 2 + 0.01]
    assert min(abs(d[i]) for i in slab) < NODULE_RADIUS_MM - 1  # a neighbour crosses it
    column, row, _ = native_place(series, k, centre.tolist())
    c, r = round(column), round(row)
    assert stack[k, r, c] < -500 < stack[slab, r, c].max()  # lung here, nodule in the slab

    sign_in(page, gateway)
    open_case(page, case.job_id, view="original")
    page.get_by_label("Nodule outlines").uncheck()
    page.locator(f'tr[data-finding="{finding.id}"]').click()
    wait_image(page, finding.instance_number)
    page.locator(f"{PANE} canvas").focus()
    step = numbers.index(finding.instance_number)
    for _ in range(abs(k - step)):
        page.keyboard.press("ArrowDown" if k > step else "ArrowUp")
    wait_image(page, numbers[k])
    x, y, _ = screen_place(page, series, column, row)
    plain = red_around(page, x, y)
    assert plain.mean() < 150  # lung at the lung window

    mip = page.get_by_role("button", name="MIP", exact=True)
    assert mip.is_enabled()
    mip.click()
    wait_attribute(page, "data-mip", "10")
    assert mip.get_attribute("aria-pressed") == "true"
    label = page.locator(f"{PANE} .pane-label").inner_text()
    assert label.startswith(f"Image {numbers[k]} ") and "MIP 10 mm" in label, label
    assert page.locator(PANE).get_attribute("data-mip-images") == str(len(slab))
    projected = red_around(page, x, y)
    assert projected.mean() > plain.mean() + 80  # the neighbour's nodule shows
    page.mouse.move(*page_point(page, x, y))  # the probe reads the slab's maximum there
    probe = page.locator(".probe")
    page.wait_for_function("p => p.dataset.mip === '10'", arg=probe.element_handle())
    assert probe.get_attribute("data-zyx") == f"{k + 1} {r} {c}"
    assert int(probe.get_attribute("data-hu")) == stack[slab, r, c].max()

    page.locator(f"{PANE} canvas").focus()
    page.keyboard.press("p")  # the same shortcut as in the reconstruction turns it off
    wait_attribute(page, "data-mip", None)
    assert "MIP" not in page.locator(f"{PANE} .pane-label").inner_text()
    assert mip.get_attribute("aria-pressed") == "false"
    assert np.array_equal(red_around(page, x, y), plain)
    assert page.errors == []


COS, SIN = float(np.cos(np.radians(30))), 0.5


@pytest.mark.parametrize(("iop", "letters", "zoom_steps"), [
    (None, "R L A P", 0),  # the synthetic series as written: axial
    (None, "R L A P", 4),
    ([1, 0, 0, 0, 0, -1], "R L S I", 0),  # coronal
    ([COS, SIN, 0, -SIN, COS, 0], "RA LP AL PR", 0),  # axial turned by 30 degrees
], ids=["axial", "axial-zoomed", "coronal", "oblique"])
def test_orientation_letters_and_scale_bar(page: Any, dashboard: tuple[Gateway, Case],
                                           iop: list[float] | None, letters: str,
                                           zoom_steps: int) -> None:
    gateway, case = dashboard
    series = series_of(gateway, case.job_id)
    if iop is None:
        assert np.allclose(series["image_orientation_patient"], [1, 0, 0, 0, 1, 0])
    else:
        with_series(page, image_orientation_patient=iop)
    sign_in(page, gateway)
    open_case(page, case.job_id, view="original")
    wait_attribute(page, "data-orientation", letters)
    page.locator(f"{PANE} canvas").focus()
    for _ in range(zoom_steps):
        page.keyboard.press("+")
    _, _, per_mm = screen_place(page, series, 0, 0)
    per_mm *= 1.25 ** zoom_steps
    pane = page.locator(PANE)
    page.wait_for_function(
        "perMm => { const d = document.querySelector('.pane-original').dataset;"
        " return Math.abs(Number(d.scalePx) - Number(d.scaleMm) * perMm) < 2; }", arg=per_mm)
    box = page.locator(f"{PANE} canvas").bounding_box()
    assert float(pane.get_attribute("data-scale-px")) <= box["width"] * 0.25  # fits its corner
    # the left letter is drawn: white text with a dark outline at the middle of the left edge
    left = np.asarray(page.evaluate(PIXELS_JS, [14, round(box["height"] / 2), 10]),
                      int).reshape(-1, 4)[:, :3]
    assert (left >= 250).all(axis=1).sum() > 5 and (left < 25).all(axis=1).sum() > 5
    assert page.errors == []
