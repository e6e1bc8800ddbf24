"""The original series drawn while it loads, in headless Chromium: the image shown first is
asked for alone and drawn while the rest of the series is held back (playwright's route
handling delays those answers); an image not yet in is drawn black; the case becomes ready
once every image is in, and then draws the same first image and the rest."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np

from tests.conftest import Gateway
from tests.frontend.conftest import Case
from tests.frontend.test_dashboard_browser import sign_in
from tests.frontend.test_dashboard_original import series_of

PANE = ".pane-original"
IMAGE_JS = """() => {
    const c = document.querySelector('.pane-original canvas');
    return [c.width, c.height, Array.from(c.getContext('2d').getImageData(0, 0, c.width,
            c.height).data)];
}"""


def canvas(page: Any) -> np.ndarray:
    """The middle of the pane's canvas (a box of 40 % of its sides, inside the image, away from
    the orientation letters and the scale bar) as (height, width, 3) RGB."""
    width, height, data = page.evaluate(IMAGE_JS)
    rgb = np.asarray(data, np.uint8).reshape(height, width, 4)[..., :3]
    return rgb[int(height * 0.3):int(height * 0.7), int(width * 0.3):int(width * 0.7)]


def test_the_first_image_is_drawn_before_the_rest_of_the_series_arrives(
        page: Any, dashboard: tuple[Gateway, Case]) -> None:
    gateway, case = dashboard
    asked: list[dict[str, list[str]]] = []
    held: list[Any] = []
    released = False

    def hold_the_rest(route: Any) -> None:
        query = parse_qs(urlparse(route.request.url).query)
        asked.append(query)
        if released or query.get("count") == ["1"]:
            route.continue_()
        else:
            held.append(route)

    sign_in(page, gateway)
    page.route("**/viewer/original/pixels?*", hold_the_rest)
    page.locator(f'tr[data-job="{case.job_id}"] a.open-case').click()
    pane = page.locator(f'{PANE}[data-complete="false"]')
    pane.wait_for()
    page.wait_for_function("() => document.querySelector('.pane-original').dataset.index")
    page.wait_for_function("() => document.querySelector('.pane-original canvas').width > 1")
    first = asked[0]
    assert first["count"] == ["1"] and first["layout"] == ["planes"]
    k = int(first["start"][0])
    assert int(pane.get_attribute("data-index")) == k + 1  # the image asked for first is shown
    assert page.locator("main").get_attribute("data-ready") != "true"
    assert "Loading images: 1 of" in page.locator(f"{PANE} .pane-label").inner_text()
    page.wait_for_timeout(300)  # a few frames: nothing more may arrive
    early = canvas(page)
    assert early.std() > 10  # an image, not a black pane
    assert held and all(r.request.url.find(f"start={k}&count=1") < 0 for r in held)

    page.locator(f"{PANE} canvas").focus()
    page.keyboard.press("PageDown")  # ten images on: not in yet
    page.wait_for_function(f"() => document.querySelector('{PANE}').dataset.index === "
                           f"'{k + 11}'")
    page.wait_for_timeout(100)
    assert np.mean(canvas(page).max(axis=2) > 40) < 0.01  # black (but a finding's marker)

    released = True
    for route in held:
        route.continue_()
    page.locator('main[data-ready="true"][data-view="original"]').wait_for()
    assert page.locator(PANE).get_attribute("data-complete") == "true"
    page.wait_for_timeout(100)
    assert canvas(page).std() > 10  # the image ten on, drawn once it arrived
    page.keyboard.press("PageUp")
    page.wait_for_function(f"() => document.querySelector('{PANE}').dataset.index === "
                           f"'{k + 1}'")
    page.wait_for_timeout(100)
    assert np.array_equal(canvas(page), early)  # the same drawing as before the rest came
    n = len(series_of(gateway, case.job_id)["images"])
    covered = sorted(i for q in asked for i in range(int(q["start"][0]),
                                                     int(q["start"][0]) + int(q["count"][0])))
    assert set(covered) == set(range(n))  # every image asked for (a retry may ask again)
