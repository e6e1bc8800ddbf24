"""Dashboard viewer benchmark: how fast a case opens and how smooth scrolling is.

    .venv/bin/python bench/bench_viewer.py [--study ../shared/data/ct/LIDC-IDRI-0003.zip]
        [--repeat 5] [--frames 300]

Starts ``lungcad serve --no-workers --no-relay`` as a separate process (embedded configuration,
serving the dashboard at /), preprocesses the study with the real pipeline (without the shared
data: a synthetic chest CT of 300 axial slices), stores it as a succeeded job with findings
analysed at known positions (tests/frontend/cases.py), then drives headless Chromium (Debian's
``/usr/bin/chromium``) over loopback:

1. cold open: load ``/#/case/<id>`` in a signed-in tab (page, scripts, case JSON, volume and
   mask downloaded and inflated, first frame painted) until the app marks itself ready;
2. warm open: the same case opened again from the worklist inside the running app;
3. scroll: one wheel event per animation frame over the axial pane for ``--frames`` frames;
   reports the render time of each frame (slice cut + window LUT + overlays) and the interval
   between animation frames.

Targets: open < 2 s; scrolling keeps every frame well under 16.7 ms (60 Hz).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
DEFAULT_STUDY = ROOT.parent / "shared" / "data" / "ct" / "LIDC-IDRI-0003.zip"


def start_server(data_dir: Path, port: int) -> tuple[subprocess.Popen[bytes], str, dict[str, str]]:
    env = {**os.environ, "LUNGCAD_ENV": "development", "LUNGCAD_DATA_DIR": str(data_dir),
           "LUNGCAD_RATE_LIMIT_PER_S": "0"}  # measure the viewer, not the per-key limit
    subprocess.run([sys.executable, "-m", "lungcad.cli", "migrate"], env=env, check=True,  # noqa: S603
                   capture_output=True)
    key = subprocess.run([sys.executable, "-m", "lungcad.cli", "admin", "create-key",  # noqa: S603
                          "--tenant", "bench"], env=env, check=True, capture_output=True,
                         text=True).stdout.strip().splitlines()[-1]
    process = subprocess.Popen([sys.executable, "-m", "lungcad.cli", "serve", "--port",  # noqa: S603
                                str(port), "--no-workers", "--no-relay"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process, key, env
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("server did not start")


def prepare_case(study: Path | None, data_dir: Path, url: str, key: str,
                 columns: int = 320) -> tuple[str, tuple]:
    """Store ``study`` (else a synthetic CT of 300 slices of ``columns`` x ``columns`` pixels
    over 320 mm) as a succeeded job with findings; its id and the 1 mm volume's shape."""
    from lungcad.settings import Settings
    from lungcad_gateway.runtime import Runtime
    from lungcad_preprocess.pipeline import preprocess_path
    from tests.frontend.cases import LUNA16, findings_document, publish_case, upload

    tmp = Path(tempfile.mkdtemp(prefix="bench-viewer-"))
    if study is None:
        from lungcad.synthetic import default_geometry, make_chest_ct, write_dicom_series

        ct = make_chest_ct(default_geometry(shape=(300, columns, columns),
                                            spacing=(1.0, 320 / columns, 320 / columns)), seed=1)
        study = tmp / "synthetic"
        write_dicom_series(ct.hu, ct.geometry, study)
        nodules = [(n.center_lps, n.diameter_mm) for n in ct.nodules]
    else:
        nodules = LUNA16.get(study.stem, [])
    t = time.perf_counter()
    result = preprocess_path(study)
    print(f"preprocessed {study.name}: {result.hu.shape} (z, y, x) in "
          f"{time.perf_counter() - t:.1f} s", flush=True)
    runtime = Runtime(Settings(env="development", data_dir=data_dir))
    gateway = SimpleNamespace(runtime=runtime, key=key, client=lambda: httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120))
    job = upload(gateway, study)  # type: ignore[arg-type]
    publish_case(gateway, job["id"], result,  # type: ignore[arg-type]
                 findings_document(result, nodules, job["id"]))
    runtime.close()
    return job["id"], result.hu.shape


SCROLL_JS = """async ([frames]) => {
  const canvas = document.querySelector('.pane-axial canvas');
  const perf = window.__lungcadPerf;
  const start = perf.renders.length;
  const stamps = [];
  const box = canvas.getBoundingClientRect();
  for (let i = 0; i < frames; i++) {
    const dir = Math.floor(i / 100) % 2 ? -1 : 1;
    canvas.dispatchEvent(new WheelEvent('wheel', {deltaY: 100 * dir, bubbles: true,
      cancelable: true, clientX: box.x + 10, clientY: box.y + 10}));
    stamps.push(await new Promise(r => requestAnimationFrame(r)));
  }
  await new Promise(r => requestAnimationFrame(r));
  const intervals = stamps.slice(1).map((t, i) => t - stamps[i]);
  return {renders: perf.renders.slice(start), intervals};
}"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run_browser(url: str, key: str, job_id: str, repeat: int, frames: int) -> dict[str, object]:
    from playwright.sync_api import sync_playwright

    out: dict[str, object] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=os.environ.get(
            "LUNGCAD_CHROMIUM", "/usr/bin/chromium"), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1600, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(url + "/")
        page.get_by_label("API key").fill(key)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("heading", name="Worklist").wait_for()
        cold, warm = [], []
        for _ in range(repeat):
            page.goto("about:blank")
            t = time.perf_counter()
            page.goto(f"{url}/#/case/{job_id}?view=reconstruction")  # the 1 mm three-plane view
            page.locator('main[data-ready="true"]').wait_for()
            cold.append((time.perf_counter() - t) * 1000)
            page.evaluate("location.hash = '#/worklist'")
            page.locator(f'tr[data-job="{job_id}"]').wait_for()
            t = time.perf_counter()
            page.evaluate("hash => { location.hash = hash; }",
                          f"#/case/{job_id}?view=reconstruction")
            page.locator('main[data-ready="true"]').wait_for()
            warm.append((time.perf_counter() - t) * 1000)
        page.locator(".pane-axial canvas").focus()
        scroll = page.evaluate(SCROLL_JS, [frames])
        browser.close()
    out["cold"], out["warm"] = cold, warm
    out["renders"], out["intervals"] = scroll["renders"], scroll["intervals"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study", type=Path, default=DEFAULT_STUDY if DEFAULT_STUDY.exists()
                        else None, help="a zip or DICOM folder (default: LIDC-IDRI-0003 "
                        "from the shared data, else a synthetic 300-slice CT)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lungcad-bench-viewer-") as tmp:
        data_dir = Path(tmp) / "data"
        server, key, _ = start_server(data_dir, args.port)
        url = f"http://127.0.0.1:{args.port}"
        try:
            job_id, shape = prepare_case(args.study, data_dir, url, key)
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as c:
                t = time.perf_counter()
                volume = c.get(f"/v1/jobs/{job_id}/viewer/volume")
                fetch_ms = (time.perf_counter() - t) * 1000
            raw = int(volume.headers["x-lungcad-inflated-length"])
            r = run_browser(url, key, job_id, args.repeat, args.frames)
        finally:
            server.terminate()
            server.wait(timeout=30)
    cold, warm = r["cold"], r["warm"]
    renders, intervals = r["renders"], r["intervals"]
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          f"volume {shape[0]} x {shape[1]} x {shape[2]} (z, y, x) int16")
    print(f"volume transfer: {len(volume.content) / 1e6:.1f} MB deflated "
          f"({raw / 1e6:.1f} MB raw), GET from Python {fetch_ms:.0f} ms")
    print(f"{'measure':<34}{'median':>10}{'p95':>10}{'max':>10}")
    for name, values in (("cold open, page load -> ready (ms)", cold),
                         ("warm open, click -> ready (ms)", warm),
                         ("scroll: render per frame (ms)", renders),
                         ("scroll: frame interval (ms)", intervals)):
        values = list(values)  # type: ignore[call-overload]
        print(f"{name:<34}{statistics.median(values):>10.1f}{pct(values, 0.95):>10.1f}"
              f"{max(values):>10.1f}")


if __name__ == "__main__":
    main()
