"""The original-series reading mode in headless Chromium, on the synthetic case (numbered from
the head down, so an image number is not a slice index).

Expected image numbers come from the DICOM files (tests.factories.instance_number_at) and the
expected screen positions from the series geometry and the canvas box (the viewer fits the
image, with its pixel aspect, in the pane and centres it), not from the viewer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tests.conftest import Gateway
from tests.factories import instance_number_at
from tests.frontend.conftest import Case
from tests.frontend.test_dashboard_browser import open_case, sign_in

PANE = ".pane-original"
SELECTED = (255, 59, 59)  # the selected finding's outline (#ff3b3b)
PIXELS_JS = """([x, y, r]) => {
    const c = document.querySelector('.pane-original canvas');
    return Array.from(c.getContext('2d').getImageData(x - r, y - r, 2 * r + 1, 2 * r + 1).data);
}"""


def series_of(gateway: Gateway, job_id: str) -> dict[str, Any]:
    with gateway.client() as client:
        response = client.get(f"/v1/jobs/{job_id}/viewer/original")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def native_place(series: dict[str, Any], k: int, center_mm: list[float]
                 ) -> tuple[float, float, float]:
    """Column, row (pixel centres) of an LPS point on image k, and its distance from it."""
    iop = np.asarray(series["image_orientation_patient"], float)
    row_dir, col_dir = iop[:3], iop[3:]
    rel = np.asarray(center_mm, float) - np.asarray(
        series["images"][k]["image_position_patient"], float)
    row_mm, col_mm = series["pixel_spacing"]
    return (float(rel @ row_dir) / col_mm, float(rel @ col_dir) / row_mm,
            float(abs(rel @ np.cross(row_dir, col_dir))))


def screen_place(page: Any, series: dict[str, Any], column: float, row: float
                 ) -> tuple[float, float, float]:
    """Canvas CSS px of a pixel centre, unzoomed and unpanned, and CSS px per mm."""
    box = page.locator(f"{PANE} canvas").bounding_box()
    row_mm, col_mm = series["pixel_spacing"]
    per_mm = min(box["width"] / (series["columns"] * col_mm),
                 box["height"] / (series["rows"] * row_mm))
    ox = (box["width"] - series["columns"] * col_mm * per_mm) / 2
    oy = (box["height"] - series["rows"] * row_mm * per_mm) / 2
    return ox + (column + 0.5) * col_mm * per_mm, oy + (row + 0.5) * row_mm * per_mm, per_mm


def has_outline_near(page: Any, x: float, y: float, reach: int = 3) -> bool:
    """Whether the selected outline's colour is drawn within ``reach`` px of (x, y)."""
    data = np.asarray(page.evaluate(PIXELS_JS, [round(x), round(y), reach]), int).reshape(-1, 4)
    return bool(np.any(np.all(np.abs(data[:, :3] - SELECTED) <= 40, axis=1)))


def wait_image(page: Any, number: int) -> None:
    page.wait_for_function(
        "n => document.querySelector('.pane-original')?.dataset.image === String(n)",
        arg=number)


def test_original_series_jumps_to_the_finding_image_and_draws_it_in_place(
        page: Any, dashboard: tuple[Gateway, Case], artifacts_dir: Path) -> None:
    gateway, case = dashboard
    series = series_of(gateway, case.job_id)
    numbers = [image["instance_number"] for image in series["images"]]
    sign_in(page, gateway)
    open_case(page, case.job_id, view="original")  # the worklist link opens the original
    assert page.get_by_role("button", name="Original series").get_attribute(
        "aria-pressed") == "true"
    assert page.locator(".pane-axial").count() == 0
    assert "Research use, not for clinical diagnosis" in page.locator(".notice-inline").inner_text()

    for finding in case.document.findings:
        expected, _ = instance_number_at(case.folder, finding.center_mm)
        assert finding.instance_number == expected
        page.locator(f'tr[data-finding="{finding.id}"]').click()
        wait_image(page, expected)
        k = numbers.index(expected)
        label = page.locator(f"{PANE} .pane-label").inner_text()
        assert label.startswith(f"Image {expected} ({k + 1} of {len(numbers)})"), label

        column, row, depth = native_place(series, k, finding.center_mm)
        x, y, per_mm = screen_place(page, series, column, row)
        drawn = page.locator(PANE).get_attribute("data-selected-at")
        assert drawn is not None, finding.id
        dx, dy = (float(v) for v in drawn.split())
        assert abs(dx - x) <= 2 and abs(dy - y) <= 2, (finding.id, drawn, x, y)
        # the outline itself, on the canvas: a circle of the cross-section's radius there
        radius = max(4.0, np.sqrt(max(0.0, (finding.diameter_mm / 2) ** 2 - depth**2)) * per_mm)
        for px, py in ((x - radius, y), (x, y - radius), (x, y + radius), (x + radius, y)):
            assert has_outline_near(page, px, py), (finding.id, px, py)
        assert not has_outline_near(page, x, y, reach=1)  # a ring, not a filled disc
    page.screenshot(path=artifacts_dir / "original-series.png")
    assert page.errors == []


def test_original_series_scrolls_windows_and_toggles(page: Any,
                                                     dashboard: tuple[Gateway, Case]) -> None:
    gateway, case = dashboard
    series = series_of(gateway, case.job_id)
    numbers = [image["instance_number"] for image in series["images"]]
    sign_in(page, gateway)
    open_case(page, case.job_id, view="original")
    pane = page.locator(PANE)
    start = int(pane.get_attribute("data-index"))
    canvas = page.locator(f"{PANE} canvas")
    canvas.focus()
    page.keyboard.press("ArrowDown")
    wait_image(page, numbers[start])  # data-index is 1-based: the next image
    page.mouse.move(*_centre(canvas))
    page.mouse.wheel(0, 120)
    wait_image(page, numbers[start + 1])
    page.keyboard.press("m")
    page.wait_for_function("() => document.querySelector('.pane-original .pane-label')"
                           ".textContent.includes('W 350 L 50')")
    assert page.get_by_role("button", name="Mediastinum").get_attribute("aria-pressed") == "true"
    assert pane.get_attribute("data-index") == str(start + 2)
    # cine: C plays through the images (wrapping), C again stops it where it is
    page.keyboard.press("c")
    page.wait_for_function("() => document.querySelector('.pane-original .pane-label')"
                           ".textContent.includes('Cine')")
    page.wait_for_function(f"() => Number(document.querySelector('{PANE}').dataset.index) "
                           f"!== {start + 2}")
    page.keyboard.press("c")
    page.wait_for_function("() => !document.querySelector('.pane-original .pane-label')"
                           ".textContent.includes('Cine')")
    stopped = pane.get_attribute("data-index")
    page.wait_for_timeout(400)  # 4 frames at 10 images a second, had it still been playing
    assert pane.get_attribute("data-index") == stopped

    page.get_by_role("button", name="1 mm reconstruction").click()
    page.locator('main[data-view="reconstruction"] .pane-axial canvas').wait_for()
    assert page.evaluate("location.hash").endswith("?view=reconstruction")
    assert page.locator(PANE).count() == 0
    page.get_by_role("button", name="Original series").click()
    page.locator(f'main[data-view="original"] {PANE}').wait_for()
    first = case.document.findings[0]
    wait_image(page, first.instance_number)  # the selected finding is shown again
    assert page.errors == []


def _centre(locator: Any) -> tuple[float, float]:
    box = locator.bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
