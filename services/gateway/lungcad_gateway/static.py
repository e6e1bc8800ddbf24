"""The dashboard's static files, served by the gateway at ``/`` in the embedded mode.

In compose, nginx serves the Vite build (``services/frontend/dist``) and the gateway image holds
no dashboard. Run from a checkout (``lungcad demo``, ``lungcad serve``, the tests), the gateway
serves the dashboard's source directly: it is plain ES modules that browsers run unbuilt, so no
Node build is needed. Only ``index.html`` and files under ``src/`` with an allowed suffix are
served; everything gets the same security headers as nginx adds (deploy/nginx.conf).
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse

from lungcad.errors import NotFound
from lungcad.settings import Settings

log = logging.getLogger(__name__)
SUFFIXES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml",
            ".png": "image/png", ".woff2": "font/woff2"}
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-cache",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; connect-src 'self'; object-src 'none'; frame-ancestors 'none'; "
        "base-uri 'self'; form-action 'self'"),
}


def frontend_dir(settings: Settings) -> Path | None:
    """The dashboard's folder (``settings.frontend_dir`` if set), or None when absent."""
    configured = getattr(settings, "frontend_dir", None)
    root = Path(configured) if configured else (
        Path(__file__).resolve().parents[3] / "services" / "frontend")
    return root if (root / "index.html").is_file() else None


def install(app: FastAPI, settings: Settings) -> bool:
    """Add ``/`` and ``/src/...`` when the dashboard's files are present; True if added."""
    root = frontend_dir(settings)
    if root is None:
        log.info("dashboard files not found; not serving the dashboard")
        return False
    src = (root / "src").resolve()

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(root / "index.html", media_type="text/html", headers=HEADERS)

    @app.get("/src/{path:path}", include_in_schema=False)
    def source(path: str) -> FileResponse:
        target = (src / path).resolve()
        if (not target.is_relative_to(src) or target.suffix not in SUFFIXES
                or not target.is_file()):
            raise NotFound(f"No dashboard file {path!r}.", code="not_found")
        return FileResponse(target, media_type=SUFFIXES[target.suffix], headers=HEADERS)

    return True
