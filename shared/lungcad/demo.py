"""``lungcad demo``: the embedded system (SQLite, local store, file broker, in-process relay and
worker processes) on this machine, with a synthetic chest CT sent through the real API.

Needs no servers and no real data. Research use, not for clinical diagnosis.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import httpx

TERMINAL = {"succeeded", "failed", "canceled"}


def _synthetic_zip() -> bytes | None:
    try:
        from lungcad import synthetic
    except ImportError:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        case = synthetic.make_chest_ct(seed=7)
        synthetic.write_dicom_series(case.hu, case.geometry, Path(tmp))
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(Path(tmp).rglob("*.dcm")):
                zf.write(path, f"DEMO/{path.name}")
        return buffer.getvalue()


def run_demo(host: str, port: int, once: bool = False) -> int:
    os.environ.setdefault("LUNGCAD_ENV", "development")
    os.environ.setdefault("LUNGCAD_DATA_DIR", str(Path("var/demo").resolve()))
    from lungcad.settings import get_settings

    get_settings.cache_clear()
    from lungcad.cli import main

    main(["migrate"])
    key_out = io.StringIO()
    from contextlib import redirect_stdout

    with redirect_stdout(key_out):
        main(["admin", "create-key", "--tenant", "demo"])
    key = key_out.getvalue().strip().splitlines()[-1]
    from lungcad.cli import EmbeddedServer

    embedded = EmbeddedServer(get_settings(), host, port, workers=True, migrate=False)
    server = threading.Thread(target=embedded.run, daemon=True)
    server.start()
    base = f"http://{host}:{port}"
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        for _ in range(200):
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        payload = _synthetic_zip()
        if payload is None:
            print("synthetic CT generator not installed; the server runs without a demo job")
        else:
            response = client.post("/v1/jobs", files=[("files", ("demo.zip", payload,
                                                                 "application/zip"))])
            response.raise_for_status()
            job = response.json()
            print(f"submitted job {job['id']} ({len(payload) / 1e6:.1f} MB synthetic chest CT)")
            deadline = time.monotonic() + 300
            while job["state"] not in TERMINAL and time.monotonic() < deadline:
                time.sleep(1)
                job = client.get(f"/v1/jobs/{job['id']}").json()
                print(f"  {job['state']:<13} {job['stage']:<20} {job['progress']:>3}%")
            if job["state"] == "succeeded":
                result = client.get(f"/v1/jobs/{job['id']}/result").json()
                print(json.dumps(result, indent=2))
            else:
                print(f"job ended {job['state']}: {job.get('error_code')}: "
                      f"{job.get('error_message')}")
            if once:
                embedded.stop()
                server.join(timeout=30)
                return 0 if job["state"] == "succeeded" else 1
    print(f"\nDashboard: {base}/   API: {base}/docs   API key: {key}\n"
          "Research use, not for clinical diagnosis. Press Ctrl-C to stop.")
    try:
        while server.is_alive():
            server.join(timeout=1)
    except KeyboardInterrupt:
        embedded.stop()
        server.join(timeout=30)
    return 0
