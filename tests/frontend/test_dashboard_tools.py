"""The viewer's reading tools in headless Chromium: slab MIP, orientation markers, scale bar,
HU probe and calipers (length and bidirectional), on the synthetic case.

Screen positions are derived here from the canvas box, the grid shape and the zoom (the
viewer fits the slice in the pane and centres it), not read back from the viewer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lungcad_preprocess.pipeline import Preprocessed
from tests.conftest import Gateway
from tests.frontend.conftest import Case
from tests.frontend.test_dashboard_browser import open_case, sign_in
from tests.frontend.test_viewer_api import inflate_npy

PANES = {"axial": "R L A P", "coronal": "R L S I", "sagittal": "A P S I"}

RED_JS = """() => {
    const c = document.querySelector('.pane-axial canvas');
    const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    return Array.from(data.filter((_, i) => i % 4 === 0));
}"""  # the red channel of the axial canvas; the image is grey


def viewer_case(gateway: Gateway, job_id: str) -> tuple[dict[str, Any], np.ndarray]:
    with gateway.client() as client:
        info = client.get(f"/v1/jobs/{job_id}/viewer").json()
        volume = inflate_npy(client.get(f"/v1/jobs/{job_id}/viewer/volume").content)
    return info, volume


def solid_finding(info: dict[str, Any], study: tuple[Path, Preprocessed]) -> dict[str, Any]:
    """The finding at the phantom's isolated 10 mm solid nodule (its first)."""
    centre = np.asarray(study[1].meta["test_nodules"][0][0], float)
    return min(info["findings"], key=lambda f: float(np.linalg.norm(
        np.asarray(f["finding"]["center_mm"]) - centre)))


def axial_mapping(page: Any, info: dict[str, Any], zoom: float = 1.0
                  ) -> tuple[float, float, float]:
    """CSS px per axial pane pixel and the page position of the slice's top-left corner,
    unpanned: the slice (nx by ny) is fitted in the canvas and centred."""
    _, ny, nx = info["geometry"]["shape_zyx"]
    box = page.locator(".pane-axial canvas").bounding_box()
    s = min(box["width"] / nx, box["height"] / ny) * zoom
    return s, box["x"] + (box["width"] - nx * s) / 2, box["y"] + (box["height"] - ny * s) / 2


def axial_red(page: Any) -> np.ndarray:
    return np.asarray(page.evaluate(RED_JS), np.int16)


def wait_pane(page: Any, plane: str, attribute: str, value: str | None) -> None:
    page.wait_for_function(
        "([plane, name, value]) => document.querySelector('.pane-' + plane)"
        ".getAttribute(name) === value", arg=[plane, attribute, value])


def test_slab_mip_shows_the_slab_maximum(page: Any, dashboard: tuple[Gateway, Case]) -> None:
    gateway, case = dashboard
    sign_in(page, gateway)
    open_case(page, case.job_id)
    page.get_by_label("Nodule outlines").uncheck()
    page.get_by_label("Crosshair").uncheck()
    axial = page.locator(".pane-axial")
    page.wait_for_function("() => !document.querySelector('.pane-axial').dataset.mip")
    plain = axial_red(page)

    mip = page.get_by_role("button", name="MIP", exact=True)
    assert mip.get_attribute("aria-pressed") == "false"
    mip.click()
    for plane in PANES:
        wait_pane(page, plane, "data-mip", "10")
        assert "MIP 10 mm" in page.locator(f".pane-{plane} .pane-label").inner_text()
    assert mip.get_attribute("aria-pressed") == "true"
    projected = axial_red(page)
    assert projected.shape == plain.shape
    assert (projected >= plain).all()  # a maximum is never darker than the slice in it
    assert (projected > plain + 20).sum() > 200  # vessels from neighbouring slices show

    page.get_by_label("MIP slab thickness").select_option("20")
    wait_pane(page, "axial", "data-mip", "20")
    assert "MIP 20 mm" in axial.locator(".pane-label").inner_text()

    page.locator(".pane-axial canvas").focus()
    page.keyboard.press("p")  # the shortcut toggles it off, and the button follows
    for plane in PANES:
        wait_pane(page, plane, "data-mip", None)
    assert "MIP" not in axial.locator(".pane-label").inner_text()
    assert mip.get_attribute("aria-pressed") == "false"
    restored = axial_red(page)
    assert np.array_equal(restored, plain)
    assert page.errors == []


def test_the_probe_reads_the_hu_under_the_pointer(
        page: Any, dashboard: tuple[Gateway, Case],
        synthetic_study: tuple[Path, Preprocessed]) -> None:
    gateway, case = dashboard
    info, volume = viewer_case(gateway, case.job_id)
    finding = solid_finding(info, synthetic_study)
    sign_in(page, gateway)
    open_case(page, case.job_id)
    page.locator(f'tr[data-finding="{finding["finding"]["id"]}"]').click()
    z, y, x = (round(v) for v in finding["index_zyx"])
    s, ox, oy = axial_mapping(page, info)
    page.mouse.move(ox + (x + 0.5) * s, oy + (y + 0.5) * s)
    probe = page.locator(".probe")
    page.wait_for_function("p => p.dataset.plane === 'axial'",
                           arg=probe.element_handle())
    assert probe.get_attribute("data-zyx") == f"{z} {y} {x}"
    hu = int(probe.get_attribute("data-hu"))
    assert hu == volume[z, y, x] and -60 < hu < 130  # the solid nodule (35 HU + noise)
    assert f"{hu} HU (this slice)" in probe.inner_text()

    page.get_by_role("button", name="MIP", exact=True).click()  # the probe says it is the MIP
    page.mouse.move(ox + (x + 0.5) * s, oy + (y + 0.5) * s)
    page.wait_for_function("p => p.dataset.mip === '10'", arg=probe.element_handle())
    slab = volume[max(0, z - 4):z + 6, y, x]  # 10 slices of 1 mm centred on z
    assert int(probe.get_attribute("data-hu")) == slab.max()
    assert "maximum of the 10 mm MIP slab" in probe.inner_text()
    page.mouse.move(1, 1)
    page.wait_for_function("p => !p.dataset.hu", arg=probe.element_handle())
    assert page.errors == []


def test_calipers_measure_in_mm_at_the_current_zoom(
        page: Any, dashboard: tuple[Gateway, Case],
        synthetic_study: tuple[Path, Preprocessed], artifacts_dir: Path) -> None:
    gateway, case = dashboard
    info, _ = viewer_case(gateway, case.job_id)
    finding = solid_finding(info, synthetic_study)
    _, spacing_y, spacing_x = info["geometry"]["spacing_zyx_mm"]
    sign_in(page, gateway)
    open_case(page, case.job_id)
    page.locator(".pane-axial canvas").focus()
    for _ in range(3):
        page.keyboard.press("+")
    zoom = 1.25 ** 3
    # a jump while zoomed puts the nodule's centre in the middle of the pane
    page.locator(f'tr[data-finding="{finding["finding"]["id"]}"]').click()
    s, _, _ = axial_mapping(page, info, zoom)
    box = page.locator(".pane-axial canvas").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2

    measure = page.get_by_role("button", name="Measure", exact=True)
    measure.click()
    assert measure.get_attribute("aria-pressed") == "true"
    half = finding["radius_vox"][2] * s  # edge to edge of the nodule along x, in CSS px
    page.mouse.move(cx - half, cy)
    page.mouse.down()
    page.mouse.move(cx + half, cy, steps=6)
    page.mouse.up()
    dragged_mm = 2 * half / s * spacing_x  # the nodule's diameter
    assert abs(dragged_mm - finding["finding"]["diameter_mm"]) < 1e-6
    axial = page.locator(".pane-axial")
    page.wait_for_function("() => document.querySelector('.pane-axial').dataset.measureMm")
    measured = float(axial.get_attribute("data-measure-mm"))
    assert abs(measured - dragged_mm) < 1
    listed = page.locator(".measurements li")
    assert listed.count() == 1 and f"{measured:.1f} mm" in listed.inner_text()
    assert listed.inner_text().startswith("Axial ")

    # a new line replaces the pane's last one; a diagonal uses both in-plane spacings
    page.mouse.move(cx - 40, cy - 30)
    page.mouse.down()
    page.mouse.move(cx + 20, cy + 50, steps=6)
    page.mouse.up()
    diagonal = float(np.hypot(60 / s * spacing_x, 80 / s * spacing_y))
    page.wait_for_function(
        "mm => Math.abs(Number(document.querySelector('.pane-axial').dataset.measureMm) - mm)"
        " < 1", arg=diagonal)
    assert page.locator(".measurements li").count() == 1

    # bidirectional: the first drag is the long axis, the second the short one
    page.get_by_role("button", name="Bidirectional", exact=True).click()
    page.mouse.move(cx - 60, cy)
    page.mouse.down()
    page.mouse.move(cx + 60, cy, steps=6)
    page.mouse.up()
    page.mouse.move(cx - 15, cy - 25)  # drawn askew: kept perpendicular to the long axis
    page.mouse.down()
    page.mouse.move(cx + 15, cy + 25, steps=6)
    page.mouse.up()
    page.wait_for_function("() => document.querySelector('.pane-axial').dataset.measureShortMm")
    long_mm, short_mm = 120 / s * spacing_x, 50 / s * spacing_y
    assert abs(float(axial.get_attribute("data-measure-mm")) - long_mm) < 1
    assert abs(float(axial.get_attribute("data-measure-short-mm")) - short_mm) < 1
    assert " × " in page.locator(".measurements li").inner_text()
    page.mouse.move(cx + 5, cy + 5)  # the probe reads out under the calipers
    page.keyboard.press("p")
    wait_pane(page, "axial", "data-mip", "10")
    page.screenshot(path=artifacts_dir / "reading-tools.png")

    page.get_by_role("button", name="Clear measurements").click()
    wait_pane(page, "axial", "data-measure-mm", None)
    assert page.locator(".measurements li").count() == 0
    assert page.errors == []


@pytest.mark.parametrize("zoom_steps", [0, 4])
def test_orientation_markers_and_scale_bar(page: Any, dashboard: tuple[Gateway, Case],
                                           zoom_steps: int) -> None:
    gateway, case = dashboard
    info, _ = viewer_case(gateway, case.job_id)
    spacing_x = info["geometry"]["spacing_zyx_mm"][2]
    sign_in(page, gateway)
    open_case(page, case.job_id)
    for plane, letters in PANES.items():
        assert page.locator(f".pane-{plane}").get_attribute("data-orientation") == letters
    page.locator(".pane-axial canvas").focus()
    for _ in range(zoom_steps):
        page.keyboard.press("+")
    zoom = 1.25 ** zoom_steps
    s, _, _ = axial_mapping(page, info, zoom)
    axial = page.locator(".pane-axial")
    page.wait_for_function(
        "px => Math.abs(Number(document.querySelector('.pane-axial').dataset.scalePx) - px) < 2",
        arg=float(axial.get_attribute("data-scale-mm")) * s / spacing_x)
    mm = float(axial.get_attribute("data-scale-mm"))
    expected_px = mm * s / spacing_x
    box = page.locator(".pane-axial canvas").bounding_box()
    assert expected_px <= box["width"] * 0.25  # fits its corner
    x0, y0 = (round(float(v)) for v in axial.get_attribute("data-scale-at").split())
    drawn = page.evaluate("""([x0, y0]) => {
        const c = document.querySelector('.pane-axial canvas');
        const row = c.getContext('2d').getImageData(x0 - 1, y0, c.width - x0 + 1, 1).data;
        const isWhite = (i) => row[i] >= 250 && row[i + 1] >= 250 && row[i + 2] >= 250;
        let white = 0;  // the run from the bar's left end; its dark outline bounds it
        while (4 * (white + 1) < row.length && isWhite(4 * (white + 1))) white++;
        if (isWhite(0)) white = -1;  // no outline on the left
        const left = c.getContext('2d').getImageData(0, c.height / 2 - 12, 24, 24).data;
        let light = 0, dark = 0;  // the white letter and its dark outline
        for (let i = 0; i < left.length; i += 4) {
            if (left[i] >= 250 && left[i + 1] >= 250 && left[i + 2] >= 250) light++;
            if (left[i] < 25 && left[i + 1] < 25 && left[i + 2] < 25) dark++;
        }
        return {white, light, dark};
    }""", [x0, y0])
    assert abs(drawn["white"] - expected_px) <= 1  # the bar drawn is as long as its label says
    assert drawn["light"] > 5 and drawn["dark"] > 5  # the "R" on the left edge is drawn
    assert page.errors == []
