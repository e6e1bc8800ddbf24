"""``lungcad demo``: the embedded system (SQLite, local store, file broker, in-process relay and
worker processes) on this machine, with a synthetic chest CT sent through the real API.

The terminal tells the story: what starts, a progress bar over the job's stages, a short
findings summary, the dashboard URL and the API key. Everything the server, the migrations and
the workers log goes to ``<data dir>/demo.log`` (``--verbose`` also shows it live).

Needs no servers and no real data. Research use, not for clinical diagnosis.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from lungcad.findings import NOTICE, Location

TERMINAL = {"succeeded", "failed", "canceled"}
LOG_NAME = "demo.log"
DEMO_SEED = 7  # the demo's synthetic chest CT (four nodules)


def _synthetic_zip() -> bytes | None:
    try:
        from lungcad import synthetic
    except ImportError:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        case = synthetic.make_chest_ct(seed=DEMO_SEED)
        synthetic.write_dicom_series(case.hu, case.geometry, Path(tmp))
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(Path(tmp).rglob("*.dcm")):
                zf.write(path, f"DEMO/{path.name}")
        return buffer.getvalue()


def findings_summary(result: dict[str, Any]) -> list[str]:
    """A few lines for a person: the case, then one line per finding (largest first, at most
    five), then the notice."""
    case = result["case"]
    findings = sorted(result["findings"], key=lambda f: -f["diameter_mm"])
    lines = [f"{len(findings)} finding(s); case: {case['class']}, Lung-RADS v2022 "
             f"{case['lung_rads']['category']}, model malignancy score "
             f"{case['cancer_probability']:.0%} (not a calibrated risk)"]
    for f in findings[:5]:
        where = Location.model_validate(f["location"]).text()
        lines.append(f"  {f['id']}: {f['diameter_mm']:.1f} mm {f['type']} nodule, "
                     f"{where}, Lung-RADS "
                     f"{f['lung_rads']['category']}, Brock risk {f['brock_probability']:.1%}, "
                     f"model score {f['malignancy_probability']:.0%}")
    if len(findings) > 5:
        lines.append(f"  ... and {len(findings) - 5} more (see the dashboard)")
    lines.append(NOTICE)
    return lines


def _follow(path: Path, stop: threading.Event) -> None:
    """``--verbose``: copy what is appended to the log to stderr as it comes."""
    with path.open("rb") as handle:
        while not stop.is_set():
            chunk = handle.read()
            if chunk:
                sys.stderr.buffer.write(chunk)
                sys.stderr.buffer.flush()
            else:
                time.sleep(0.2)


def _wait_healthy(client: httpx.Client, timeout_s: float = 60) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if client.get("/healthz").status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def _run_job(console: Console, client: httpx.Client, payload: bytes) -> dict[str, Any]:
    """Submit the study and follow its stages on a progress bar; the final job."""
    response = client.post("/v1/jobs", files=[("files", ("demo.zip", payload,
                                                         "application/zip"))])
    response.raise_for_status()
    job = response.json()
    console.print(f"Submitted job {job['id']} ({len(payload) / 1e6:.1f} MB synthetic chest CT)")
    columns = (TextColumn("{task.description:<22}"), BarColumn(), TaskProgressColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(job["stage"] or job["state"], total=100)
        deadline = time.monotonic() + 600
        while job["state"] not in TERMINAL and time.monotonic() < deadline:
            time.sleep(0.5)
            job = client.get(f"/v1/jobs/{job['id']}").json()
            progress.update(task, completed=job["progress"],
                            description=job["stage"] or job["state"])
    return job  # type: ignore[no-any-return]


def run_demo(host: str, port: int, once: bool = False, verbose: bool = False) -> int:
    os.environ.setdefault("LUNGCAD_ENV", "development")
    os.environ.setdefault("LUNGCAD_DATA_DIR", str(Path("var/demo").resolve()))
    from lungcad.cli import EmbeddedServer, new_api_key
    from lungcad.logs import to_file
    from lungcad.settings import get_settings

    get_settings.cache_clear()
    settings = get_settings()
    log_path = (settings.data_dir / LOG_NAME).resolve()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_bytes(b"")
    to_file(log_path)
    from lungcad_gateway.migrate import upgrade  # after: importing alembic logs its plugins
    stop_follow = threading.Event()
    if verbose:
        threading.Thread(target=_follow, args=(log_path, stop_follow), daemon=True).start()
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"[bold]LungCAD demo[/bold]: {NOTICE} Data in {settings.data_dir.resolve()}")
    console.print(f"Full log: {log_path}" + ("" if verbose else " (--verbose to see it live)"))
    console.print("Preparing the database (SQLite) and an API key for tenant 'demo'")
    upgrade(settings)
    _, key = new_api_key(settings, "demo", None)
    console.print(f"Starting the API on http://{host}:{port} and two workers "
                  "(preprocess, inference)")
    base = f"http://{host}:{port}"
    with log_path.open("ab") as worker_log:
        embedded = EmbeddedServer(settings, host, port, workers=True, migrate=False,
                                  log_file=worker_log)
        server = threading.Thread(target=embedded.run, daemon=True)
        server.start()
        status = _demo_job(console, base, key)
        console.print(f"\nDashboard: {base}/   API docs: {base}/docs")
        console.print(f"API key:   {key}")
        if once:
            console.print("Stopping (--once).")
        else:
            console.print("Press Ctrl-C to stop.")
        try:
            while server.is_alive() and not once:
                server.join(timeout=1)
        except KeyboardInterrupt:
            pass
        embedded.stop()
        server.join(timeout=30)
    stop_follow.set()
    return status if once else 0


def _demo_job(console: Console, base: str, key: str) -> int:
    """Run the demo study through the API and print its summary; 0 when it succeeded."""
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"},
                      timeout=30) as client:
        if not _wait_healthy(client):
            console.print(f"The API did not answer on {base}; see the log.")
            return 1
        payload = _synthetic_zip()
        if payload is None:
            console.print("The synthetic CT generator is not installed; the server runs "
                          "without a demo job.")
            return 1
        job = _run_job(console, client, payload)
        if job["state"] != "succeeded":
            console.print(f"The job ended {job['state']}: {job.get('error_code')}: "
                          f"{job.get('error_message')}")
            return 1
        result = client.get(f"/v1/jobs/{job['id']}/result").json()
    console.print(f"\n[bold]Findings[/bold] (job {job['id']}, schema "
                  f"{result['schema_version']}):")
    for line in findings_summary(result):
        console.print(line)
    return 0
