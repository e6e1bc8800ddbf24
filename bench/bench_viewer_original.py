"""Dashboard benchmark of the original-series reading mode (issue 15's targets).

    .venv/bin/python bench/bench_viewer_original.py [--study PATH] [--repeat 5] [--steps 100]
        [--columns 320]

The server and the case are set up as in ``bench_viewer.py`` (its helpers, not a copy): by
default a synthetic chest CT of 300 axial slices (``--columns 512`` for 512 x 512 images),
stored as a succeeded job. The original series is decoded once from Python before the
browser opens it (the first-open decoding is reported apart). Headless Chromium then opens
``/#/case/<id>?view=original`` cold (a new document each run), first over loopback, then with
the network throttled to 100 Mbit/s through the DevTools protocol
(``Network.emulateNetworkConditions``), and measures from the navigation start:

1. first image: the first frame the original-series pane paints;
2. full series: the end of the last pixel response (Resource Timing), once every image is in;
3. images shown while it loads: whether the first image was painted before that last byte;
4. scroll (loopback, series complete): ``--steps`` wheel steps over the pane, each from the
   wheel event to the end of the frame that draws the new image (the next animation frame,
   the phase of each step against the frame clock varied).

Targets (issue 15, 300 slices): first image <= 0.5 s on loopback; full series <= 3 s at
100 Mbit/s with images shown while it loads; scroll p95 <= 33 ms.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_viewer import CHROMIUM_ARGS, pct, prepare_case, start_server  # noqa: E402

MBIT_100 = 100e6 / 8  # bytes per second
# Counts the first frame painted: windowing.js keeps the page's render times in
# window.__lungcadPerf.renders and reuses an object that is already there.
FIRST_FRAME_JS = """(() => {
  const renders = [];
  const push = renders.push;
  const perf = { renders };
  renders.push = function (...values) {
    if (perf.firstRenderAt === undefined) perf.firstRenderAt = performance.now();
    return push.apply(this, values);
  };
  window.__lungcadPerf = perf;
})();"""
LOADED_JS = """() => {
  const pixels = performance.getEntriesByType('resource')
    .filter(e => e.name.includes('/viewer/original/pixels'));
  return {firstImage: window.__lungcadPerf.firstRenderAt,
          lastByte: Math.max(...pixels.map(e => e.responseEnd)),
          requests: pixels.length,
          bytes: pixels.reduce((s, e) => s + (e.encodedBodySize || 0), 0)};
}"""
SCROLL_JS = """async ([steps]) => {
  const pane = document.querySelector('.pane-original');
  const box = pane.querySelector('canvas').getBoundingClientRect();
  const frame = () => new Promise(r => requestAnimationFrame(r));
  const latencies = [];
  for (let i = 0; i < steps; i++) {
    await new Promise(r => setTimeout(r, (i * 7) % 17));  // vary the phase against the frames
    const before = pane.dataset.index;
    const t0 = performance.now();
    pane.dispatchEvent(new WheelEvent('wheel', {deltaY: Math.floor(i / 50) % 2 ? -100 : 100,
      bubbles: true, cancelable: true, clientX: box.x + 10, clientY: box.y + 10}));
    await frame();  // runs after the viewer's own frame callback, queued by the wheel
    latencies.push(performance.now() - t0);
    if (pane.dataset.index === before) throw new Error('the wheel did not change the image');
  }
  return latencies;
}"""


def open_once(page: object, url: str, job_id: str) -> dict[str, float]:
    """One cold open of the original series; times in ms from the navigation start."""
    page.goto("about:blank")  # type: ignore[attr-defined]
    page.goto(f"{url}/#/case/{job_id}?view=original")  # type: ignore[attr-defined]
    page.locator('main[data-ready="true"][data-view="original"]').wait_for()  # type: ignore[attr-defined]
    page.wait_for_function(  # type: ignore[attr-defined]
        "() => document.querySelector('.pane-original').dataset.complete !== 'false'")
    return page.evaluate(LOADED_JS)  # type: ignore[attr-defined,no-any-return]


def run_browser(url: str, key: str, job_id: str, repeat: int, steps: int
                ) -> dict[str, list[dict[str, float]] | list[float]]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=os.environ.get(
            "LUNGCAD_CHROMIUM", "/usr/bin/chromium"), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1600, "height": 1000})
        context.add_init_script(FIRST_FRAME_JS)
        page = context.new_page()
        page.set_default_timeout(120_000)
        page.goto(url + "/")
        page.get_by_label("API key").fill(key)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("heading", name="Worklist").wait_for()
        cdp = context.new_cdp_session(page)
        cdp.send("Network.enable")
        loopback, throttled = [], []
        for _ in range(repeat):
            cdp.send("Network.emulateNetworkConditions", {
                "offline": False, "latency": 0, "downloadThroughput": -1,
                "uploadThroughput": -1})
            loopback.append(open_once(page, url, job_id))
            cdp.send("Network.emulateNetworkConditions", {
                "offline": False, "latency": 0, "downloadThroughput": MBIT_100,
                "uploadThroughput": MBIT_100})
            throttled.append(open_once(page, url, job_id))
        cdp.send("Network.emulateNetworkConditions", {
            "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
        open_once(page, url, job_id)
        page.locator(".pane-original canvas").focus()
        scroll = page.evaluate(SCROLL_JS, [steps])
        browser.close()
    return {"loopback": loopback, "throttled": throttled, "scroll": scroll}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study", type=Path, default=None,
                        help="a zip or DICOM folder (default: a synthetic 300-slice CT)")
    parser.add_argument("--columns", type=int, default=320,
                        help="rows and columns of the synthetic images (320 or 512)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lungcad-bench-original-") as tmp:
        data_dir = Path(tmp) / "data"
        server, key, _ = start_server(data_dir, args.port)
        url = f"http://127.0.0.1:{args.port}"
        try:
            job_id, _ = prepare_case(args.study, data_dir, url, key,
                                     columns=args.columns)
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"},
                              timeout=600) as client:
                t = time.perf_counter()
                series = client.get(f"/v1/jobs/{job_id}/viewer/original").json()
                decode_s = time.perf_counter() - t
            r = run_browser(url, key, job_id, args.repeat, args.steps)
        finally:
            server.terminate()
            server.wait(timeout=30)
    loopback, throttled = r["loopback"], r["throttled"]
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          f"original series {len(series['images'])} x {series['rows']} x {series['columns']} "
          f"int16, first decode {decode_s:.1f} s; {args.repeat} cold opens per network")
    print(f"pixels: {loopback[0]['requests']:.0f} request(s), "
          f"{loopback[0]['bytes'] / 1e6:.1f} MB transferred")
    print(f"{'measure (ms)':<42}{'median':>9}{'p95':>9}{'max':>9}{'target':>9}")
    rows = [
        ("loopback: first image", [o["firstImage"] for o in loopback], "500"),
        ("loopback: full series (last byte)", [o["lastByte"] for o in loopback], ""),
        ("100 Mbit/s: first image", [o["firstImage"] for o in throttled], ""),
        ("100 Mbit/s: full series (last byte)", [o["lastByte"] for o in throttled], "3000"),
        ("scroll: wheel -> image drawn", list(r["scroll"]), "p95 33"),
    ]
    for name, values, target in rows:
        print(f"{name:<42}{statistics.median(values):>9.1f}{pct(values, 0.95):>9.1f}"
              f"{max(values):>9.1f}{target:>9}")
    shown = sum(o["firstImage"] < o["lastByte"] for o in throttled)
    print(f"100 Mbit/s: first image before the last byte in {shown} of {len(throttled)} opens")


if __name__ == "__main__":
    main()
