"""The case view under failure and the reading details, in headless Chromium.

A volume download that fails (503, dropped connection) retries and then offers Retry; the
dashboard stays within a tight rate limit by honouring 429 + Retry-After and loading key images
on demand; risk is labelled truthfully (Lung-RADS v2022 with rule and management, Brock as the
risk, the CNN output as a score); viewer details (W/L presets, one-shot "add missed nodule"
with undo, full-size key images, jump while zoomed, the wheel on a narrow window).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from lungcad_preprocess.pipeline import Preprocessed
from tests.conftest import Gateway, make_settings, start_gateway
from tests.factories import instance_number_at
from tests.frontend.cases import findings_document, publish_case, upload
from tests.frontend.conftest import Case, add_case, synthetic_nodules
from tests.frontend.test_dashboard_browser import (
    axial_slice,
    load_key_images,
    open_case,
    sign_in,
    wait_slice,
)

NOTICE = "Research use, not for clinical diagnosis"


def test_a_failed_volume_download_retries_then_offers_retry(
        page: Any, dashboard: tuple[Gateway, Case]) -> None:
    gateway, case = dashboard
    sign_in(page, gateway)
    calls: list[str] = []

    def unavailable(route: Any) -> None:
        calls.append("503")
        route.fulfill(status=503, headers={"Retry-After": "0"},
                      content_type="application/problem+json", body='{"detail": "busy"}')

    page.route("**/viewer/volume", unavailable)
    page.locator(f'tr[data-job="{case.job_id}"] a.open-case').wait_for()
    page.evaluate("hash => { location.hash = hash; }", f"#/case/{case.job_id}?view=reconstruction")
    alert = page.get_by_role("alert").filter(has_text="This case cannot be shown")
    alert.wait_for()
    assert "HTTP 503" in alert.inner_text() and len(calls) >= 2  # retried before giving up
    assert page.get_by_text("Loading the images").count() == 0
    page.unroute("**/viewer/volume")

    dropped: list[str] = []

    def drop_once(route: Any) -> None:  # the connection breaks off once, then works
        if not dropped:
            dropped.append("reset")
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/viewer/volume", drop_once)
    page.get_by_role("button", name="Retry").click()
    page.locator('main[data-ready="true"]').wait_for()
    assert dropped == ["reset"] and page.locator(".pane-axial canvas").is_visible()
    assert page.errors == []


def test_an_unavailable_worklist_offers_retry(page: Any,
                                              dashboard: tuple[Gateway, Case]) -> None:
    gateway, case = dashboard
    page.route("**/v1/worklist?*", lambda route: route.fulfill(
        status=503, headers={"Retry-After": "0"}, content_type="application/problem+json",
        body='{"detail": "The service is briefly unavailable."}'))
    sign_in(page, gateway)
    alert = page.get_by_role("alert").filter(has_text="Could not load the worklist")
    alert.wait_for()
    assert "briefly unavailable" in alert.inner_text()
    page.unroute("**/v1/worklist?*")
    page.get_by_role("button", name="Retry").click()
    page.locator(f'tr[data-job="{case.job_id}"]').wait_for()
    assert page.get_by_role("alert").count() == 0
    assert page.errors == []


def test_the_dashboard_honours_the_rate_limit(page: Any, tmp_path: Path,
                                              request: Any,
                                              synthetic_study: tuple[Path, Preprocessed]
                                              ) -> None:
    """2 requests/s with bursts of 6: opening a case with 12 key images and reloading the
    worklist trips the limit; every request gets its answer in the end."""
    settings = make_settings("embedded", tmp_path, request, rate_limit_per_s=2.0,
                             rate_limit_burst=6)
    server, gateway = start_gateway(settings, run_relay=False)
    try:
        case = add_case(gateway, synthetic_study, synthetic_nodules(synthetic_study[1]))
        limited: list[str] = []
        page.on("response", lambda r: limited.append(r.url) if r.status == 429 else None)
        sign_in(page, gateway)
        for _ in range(3):
            page.reload()
            page.locator(f'tr[data-job="{case.job_id}"]').wait_for()
        open_case(page, case.job_id)
        assert load_key_images(page) == 12
        assert limited  # the limit was reached, and honoured
        assert page.errors == []
    finally:
        server.__exit__()


def test_risk_is_labelled_with_lung_rads_management(
        page: Any, dashboard: tuple[Gateway, Case],
        synthetic_study: tuple[Path, Preprocessed]) -> None:
    gateway, case = dashboard
    path, result = synthetic_study
    empty = upload(gateway, path)
    publish_case(gateway, empty["id"], result, findings_document(result, [], empty["id"]))
    with gateway.client() as client:
        info = client.get(f"/v1/jobs/{case.job_id}/viewer").json()
    sign_in(page, gateway)
    head = page.locator("table.jobs thead").inner_text()
    assert "Brock risk (PanCan)" in head and "Lung-RADS v2022" in head and "Risk" not in head
    no_nodules = page.locator(f'tr[data-job="{empty["id"]}"] td.rads')
    assert no_nodules.inner_text() == "1"

    open_case(page, case.job_id)
    risk = page.locator(".case-risk")
    text = risk.inner_text()
    category = info["case"]["lung_rads"]["category"]
    assert f"Lung-RADS v2022 category {category}" in text
    assert info["case"]["lung_rads"]["rule"] in text  # the rule is visible, not a tooltip
    management = {"4A": "LDCT in 3 months", "4B": "tissue sampling", "4X": "tissue sampling",
                  "3": "LDCT in 6 months"}[category]
    assert management in text
    assert "Brock risk (PanCan)" in text
    assert "Malignancy score (model, not a calibrated risk)" in text
    assert "cancer probability" not in page.locator("main").inner_text().lower()
    first = info["findings"][0]["finding"]
    assert first["lung_rads"]["rule"] in page.locator(".finding-detail").inner_text()
    assert "left middle" not in page.locator("table.findings").inner_text()
    for finding in case.document.findings:  # the image number PACS shows, from the headers
        shown = page.locator(f'tr[data-finding="{finding.id}"] td.image-number').inner_text()
        assert shown == str(instance_number_at(case.folder, finding.center_mm)[0])
    assert page.get_by_text(NOTICE).first.is_visible()
    assert page.errors == []


def test_viewer_details_on_a_narrow_window(page: Any, dashboard: tuple[Gateway, Case]) -> None:
    gateway, case = dashboard
    page.set_viewport_size({"width": 1000, "height": 800})
    sign_in(page, gateway)
    open_case(page, case.job_id)
    assert not page.get_by_label("Lung mask").is_checked()  # the lung tint is opt-in

    # The wheel over the images scrolls slices at 1000 px too.
    axial = page.locator(".pane-axial canvas")
    axial.scroll_into_view_if_needed()
    first = axial_slice(page)
    axial.hover()
    page.mouse.wheel(0, 120)
    page.mouse.wheel(0, 120)
    wait_slice(page, first + 2)

    # A W/L drag leaves no preset pressed; a preset click presses it again.
    lung = page.get_by_role("button", name="Lung", exact=True)
    assert lung.get_attribute("aria-pressed") == "true"
    box = axial.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 40, box["y"] + box["height"] / 2 + 20,
                    steps=5)
    page.mouse.up()
    page.wait_for_function("b => b.getAttribute('aria-pressed') === 'false'",
                           arg=lung.element_handle())
    lung.click()
    assert lung.get_attribute("aria-pressed") == "true"

    # Jump to a finding while zoomed: the nodule is in the middle of the pane.
    axial.focus()
    for _ in range(4):
        page.keyboard.press("+")
    last = case.finding_ids[-1]
    page.locator(f'tr[data-finding="{last}"]').click()
    page.wait_for_function("""() => {
        const pane = document.querySelector('.pane-axial');
        const at = (pane.dataset.selectedAt || '').split(' ').map(Number);
        const box = pane.getBoundingClientRect();
        return at.length === 2 && Math.abs(at[0] - box.width / 2) < 3
            && Math.abs(at[1] - box.height / 2) < 3;
    }""")  # the selected marker is drawn in the middle of the zoomed pane
    page.get_by_role("button", name="Reset view").click()

    # "Add missed nodule" adds one and disarms; Undo withdraws it.
    add = page.get_by_role("button", name="Add missed nodule")
    add.click()
    box = axial.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.35, box["y"] + box["height"] * 0.45)
    page.get_by_text("Missed nodule M1 recorded.").wait_for()
    assert add.get_attribute("aria-pressed") == "false"
    page.mouse.click(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.5)
    page.get_by_role("button", name="Undo").click()
    page.get_by_text("Missed nodule M1 withdrawn.").wait_for()
    page.locator(".trail li", has_text="withdraw M1").wait_for()
    trail = page.locator(".trail").inner_text()
    assert "add M1" in trail and "withdraw M1" in trail and "M2" not in trail
    with gateway.client() as client:
        entries = client.get(f"/v1/jobs/{case.job_id}/feedback").json()["data"]
    added = next(e for e in entries if e["action"] == "add")
    assert f"add M1 at image {instance_number_at(case.folder, added['center_mm'])[0]} " in trail

    # A key image opens full size.
    image = page.locator(".key-images img").first
    image.scroll_into_view_if_needed()
    page.wait_for_function("img => img.dataset.state === 'loaded'", arg=image.element_handle())
    page.locator(".key-images button.key-image").first.click()
    full = page.locator("dialog.key-image-full img")
    full.wait_for()
    natural = page.evaluate("() => document.querySelector('dialog.key-image-full img')"
                            ".naturalWidth")
    assert natural > 0 and full.bounding_box()["width"] >= min(natural, 600) - 1
    page.get_by_role("button", name="Close").click()
    page.locator("dialog.key-image-full").wait_for(state="detached")
    assert re.search(NOTICE, page.locator("main").inner_text())
    assert page.errors == []
