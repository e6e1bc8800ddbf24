"""The findings' outlines (DICOM SEG) in the original-series mode, in headless Chromium.

The synthetic case here has its SEG (written as the worker writes it for DICOM input). The
expected outline is the finding's mask sampled at the native pixel centres from the DICOM
files' geometry (tests/frontend/test_viewer_original_outlines_api.py), its contour the pixel
edges between a pixel inside and one outside; the expected screen place follows from the
geometry, the canvas box and the documented centring of a finding in a zoomed pane, not from
the viewer's code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tests.conftest import Gateway
from tests.frontend.conftest import Case
from tests.frontend.test_dashboard_browser import open_case, sign_in
from tests.frontend.test_dashboard_original import (
    PANE,
    has_outline_near,
    native_place,
    screen_place,
    series_of,
    wait_image,
)
from tests.frontend.test_viewer_original_api import read_folder
from tests.frontend.test_viewer_original_outlines_api import expected_masks

ZOOM_STEPS = 6  # "+" six times: 1.25 ** 6, a native pixel about ten CSS px wide


def contour_edges(mask: np.ndarray) -> list[tuple[float, float, float, float]]:
    """The pixel edges (x0, y0, x1, y1 in pixel-corner units) between a pixel of ``mask``
    ``(rows, columns)`` and one outside it."""
    padded = np.pad(mask, 1)
    edges = []
    for r, c in np.argwhere(mask):
        if not padded[r, c + 1]:
            edges.append((c, r, c + 1, r))  # above
        if not padded[r + 2, c + 1]:
            edges.append((c, r + 1, c + 1, r + 1))  # below
        if not padded[r + 1, c]:
            edges.append((c, r, c, r + 1))  # left
        if not padded[r + 1, c + 2]:
            edges.append((c + 1, r, c + 1, r + 1))  # right
    return edges


def segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    t = np.clip(float((p - a) @ (b - a)) / float((b - a) @ (b - a)), 0.0, 1.0)
    return float(np.linalg.norm(p - (a + t * (b - a))))


def test_the_selected_finding_is_drawn_as_its_seg_outline_not_a_circle(
        page: Any, seg_dashboard: tuple[Gateway, Case], artifacts_dir: Path) -> None:
    gateway, case = seg_dashboard
    series = series_of(gateway, case.job_id)
    files = read_folder(case.folder)
    numbers = [image["instance_number"] for image in series["images"]]
    finding = case.document.findings[0]
    k = numbers.index(finding.instance_number)
    mask = expected_masks(case, files)[finding.id][k]
    assert mask.sum() >= 8, mask.sum()  # enough of the nodule on its image to trace

    sign_in(page, gateway)
    open_case(page, case.job_id, view="original")
    page.locator(f"{PANE} canvas").focus()
    for _ in range(ZOOM_STEPS):
        page.keyboard.press("+")
    page.locator(f'tr[data-finding="{finding.id}"]').click()  # zoomed: centred on the finding
    wait_image(page, finding.instance_number)
    page.wait_for_function(f"() => document.querySelector('{PANE}').dataset.selectedShape")
    assert page.locator(PANE).get_attribute("data-selected-shape") == "outline"

    box = page.locator(f"{PANE} canvas").bounding_box()
    _, _, per_mm = screen_place(page, series, 0, 0)
    per_mm *= 1.25 ** ZOOM_STEPS
    row_mm, col_mm = series["pixel_spacing"]
    at_column, at_row, depth = native_place(series, k, finding.center_mm)

    def screen(x: float, y: float) -> np.ndarray:
        """Canvas px of a pixel-corner point (the finding's centre is the pane's centre)."""
        return np.array([box["width"] / 2 + (x - 0.5 - at_column) * col_mm * per_mm,
                         box["height"] / 2 + (y - 0.5 - at_row) * row_mm * per_mm])

    edges = [(screen(x0, y0), screen(x1, y1)) for x0, y0, x1, y1 in contour_edges(mask)]
    # the contour: the selected colour on the middle of every pixel edge of the outline
    missing = [tuple(np.round((a + b) / 2, 1)) for a, b in edges
               if not has_outline_near(page, *((a + b) / 2), reach=2)]
    assert len(missing) <= len(edges) // 20, (len(missing), len(edges), missing[:5])

    # no circle: the circle the finding had (its sphere's cross-section here) is not drawn
    # where it strays from the outline (nor where the finding's label may stand: right, above)
    radius = max(4.0, np.sqrt(max(0.0, (finding.diameter_mm / 2) ** 2 - depth ** 2)) * per_mm)
    centre = np.array([box["width"] / 2, box["height"] / 2])
    right, top = max(max(a[0], b[0]) for a, b in edges), min(min(a[1], b[1]) for a, b in edges)
    away = []
    for angle in np.linspace(0, 2 * np.pi, 96, endpoint=False):
        p = centre + radius * np.array([np.cos(angle), np.sin(angle)])
        near_label = p[0] > right - 4 and p[1] < top + 16
        if not near_label and min(segment_distance(p, a, b) for a, b in edges) > 5:
            away.append(p)
    assert len(away) >= 8, len(away)  # the circle and the outline differ enough to tell
    drawn = [tuple(np.round(p, 1)) for p in away if has_outline_near(page, *p, reach=1)]
    assert drawn == [], drawn
    # a contour, not a filled mask: the inside away from the edges is the image
    inner = [(r, c) for r, c in np.argwhere(mask) if mask[r - 1:r + 2, c - 1:c + 2].all()]
    for r, c in inner:
        assert not has_outline_near(page, *screen(c + 0.5, r + 0.5), reach=1), (r, c)
    page.screenshot(path=artifacts_dir / "original-series-outline.png")
    assert page.errors == []
