"""The findings' outlines (DICOM SEG) in the 1 mm reconstruction viewer, in headless Chromium.

The synthetic case here has its SEG. The expected outline on the axial pane is the finding's
mask on the 1 mm grid as served (decoded from the documented box and run lengths,
tests/frontend/test_viewer_outlines_api.py, which checks it against the analysis' own label
volume), its contour the voxel edges between a voxel inside and one outside on the finding's
axial slice. The expected screen place follows from the grid shape, the canvas box and the
documented centring of a selected finding in a zoomed pane, not from the viewer's code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tests.conftest import Gateway
from tests.frontend.conftest import Case
from tests.frontend.test_dashboard_browser import open_case, sign_in
from tests.frontend.test_dashboard_original_outlines import contour_edges, segment_distance
from tests.frontend.test_viewer_outlines_api import decode

PANE = ".pane-axial"
SELECTED = (255, 59, 59)  # the selected finding's colour (#ff3b3b)
ZOOM_STEPS = 8  # "+" eight times on the axial pane: 1.25 ** 8
PIXELS_JS = """([x, y, r]) => {
    const c = document.querySelector('.pane-axial canvas');
    return Array.from(c.getContext('2d').getImageData(x - r, y - r, 2 * r + 1, 2 * r + 1).data);
}"""


def selected_near(page: Any, x: float, y: float, reach: int) -> bool:
    """Whether the selected colour is drawn within ``reach`` px of (x, y) on the axial pane."""
    data = np.asarray(page.evaluate(PIXELS_JS, [round(x), round(y), reach]), int).reshape(-1, 4)
    return bool(np.any(np.all(np.abs(data[:, :3] - SELECTED) <= 40, axis=1)))


def circle_away(edges: list[tuple[np.ndarray, np.ndarray]], centre: np.ndarray,
                radius: float, label_corner: tuple[float, float]) -> list[np.ndarray]:
    """Points of a circle further than 5 px from every contour edge (and not where the
    finding's label may stand: right of the outline, above its top)."""
    right, top = label_corner
    away = []
    for angle in np.linspace(0, 2 * np.pi, 96, endpoint=False):
        p = centre + radius * np.array([np.cos(angle), np.sin(angle)])
        if p[0] > right - 4 and p[1] < top + 16:
            continue
        if min(segment_distance(p, a, b) for a, b in edges) > 5:
            away.append(p)
    return away


def test_the_selected_finding_is_its_seg_outline_on_the_axial_pane(
        page: Any, seg_dashboard: tuple[Gateway, Case], artifacts_dir: Path) -> None:
    gateway, case = seg_dashboard
    with gateway.client() as client:
        info = client.get(f"/v1/jobs/{case.job_id}/viewer").json()
        served = client.get(f"/v1/jobs/{case.job_id}/viewer/outlines").json()
    shape = tuple(info["geometry"]["shape_zyx"])
    masks = {f["finding_id"]: decode(f, shape) for f in served["findings"]}

    sign_in(page, gateway)
    open_case(page, case.job_id)
    page.locator(f"{PANE} canvas").focus()
    for _ in range(ZOOM_STEPS):
        page.keyboard.press("+")
    box = page.locator(f"{PANE} canvas").bounding_box()
    _, ny, nx = shape
    s = min(box["width"] / nx, box["height"] / ny) * min(16.0, 1.25 ** ZOOM_STEPS)
    centre = np.array([box["width"] / 2, box["height"] / 2])

    def place(vf: dict[str, Any]) -> tuple[int, list[tuple[np.ndarray, np.ndarray]], float]:
        """The finding's axial slice, its contour edges there on screen (the finding's centre
        is the pane's centre once selected) and the radius of the circle it used to have."""
        z, y, x = vf["index_zyx"]
        k = round(z)

        def screen(u: float, v: float) -> np.ndarray:  # a voxel-corner point (column, row)
            return centre + np.array([(u - 0.5 - x) * s, (v - 0.5 - y) * s])

        edges = [(screen(x0, y0), screen(x1, y1))
                 for x0, y0, x1, y1 in contour_edges(masks[vf["finding"]["id"]][k])]
        r = vf["radius_vox"][0]
        return k, edges, max(4.0, (np.sqrt(max(0.0, r ** 2 - (z - k) ** 2)) or 1.0) * s)

    # the finding whose old circle strays furthest from its outline
    candidates = []
    for vf in info["findings"]:
        k, edges, radius = place(vf)
        if not edges:
            continue
        corner = (max(max(a[0], b[0]) for a, b in edges), min(min(a[1], b[1]) for a, b in edges))
        candidates.append((len(circle_away(edges, centre, radius, corner)), vf, edges))
    count, vf, edges = max(candidates, key=lambda c: c[0])
    assert count >= 8, count  # the circle and the outline differ enough to tell
    finding_id = vf["finding"]["id"]
    k, edges, radius = place(vf)
    assert masks[finding_id][k].sum() >= 8  # enough of the nodule on its slice to trace

    page.locator(f'tr[data-finding="{finding_id}"]').click()  # zoomed: centred on the finding
    nz = shape[0]
    page.wait_for_function(
        "n => document.querySelector('.pane-axial').dataset.slice === String(n)", arg=nz - k)
    page.wait_for_function(f"() => document.querySelector('{PANE}').dataset.selectedShape")
    for plane in ("axial", "coronal", "sagittal"):  # its mask crosses every pane's slice
        assert page.locator(f".pane-{plane}").get_attribute("data-selected-shape") == "outline"

    # the contour: the selected colour on the middle of every voxel edge of the outline
    missing = [tuple(np.round((a + b) / 2, 1)) for a, b in edges
               if not selected_near(page, *((a + b) / 2), reach=2)]
    assert len(missing) <= len(edges) // 20, (len(missing), len(edges), missing[:5])
    # no circle where it strays from the outline
    corner = (max(max(a[0], b[0]) for a, b in edges), min(min(a[1], b[1]) for a, b in edges))
    away = circle_away(edges, centre, radius, corner)
    drawn = [tuple(np.round(p, 1)) for p in away if selected_near(page, *p, reach=1)]
    assert drawn == [], drawn
    # a contour, not a filled mask: the inside away from the edges is the image
    mask = masks[finding_id][k]
    inner = [(r, c) for r, c in np.argwhere(mask) if mask[r - 1:r + 2, c - 1:c + 2].all()]
    for r, c in inner:
        p = centre + np.array([(c - vf["index_zyx"][2]) * s, (r - vf["index_zyx"][1]) * s])
        assert not selected_near(page, *p, reach=1), (r, c)
    page.screenshot(path=artifacts_dir / "reconstruction-outline.png")
    assert page.errors == []
