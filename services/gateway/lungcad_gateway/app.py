"""The FastAPI application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lungcad import __version__
from lungcad.settings import Settings, get_settings
from lungcad_gateway import openapi, problems, static
from lungcad_gateway.audit import AuditMiddleware, AuditWriter
from lungcad_gateway.metrics import Metrics, MetricsMiddleware
from lungcad_gateway.relay import Relay
from lungcad_gateway.routes import (
    dicomweb,
    feedback,
    health,
    jobs,
    session,
    viewer,
    viewer_original,
)
from lungcad_gateway.runtime import Runtime

log = logging.getLogger(__name__)

DESCRIPTION = """Asynchronous chest-CT analysis jobs: upload a study, poll the job or receive a
signed webhook, then fetch the findings, DICOM SR and SEG.

**Research use, not for clinical diagnosis.**

Errors are RFC 9457 `application/problem+json` documents with a stable `code`."""


# Request headers a page on an allowed origin may send (cookies are never allowed: another
# origin authenticates with the API key, so the dashboard's session cannot be ridden).
CORS_HEADERS = ["Authorization", "X-API-Key", "Accept", "Content-Type", "Idempotency-Key"]


class NoSniffMiddleware:
    """Pure ASGI middleware: ``X-Content-Type-Options: nosniff`` on every response. Nginx adds
    it in compose; in the embedded mode clients reach the gateway directly, and its JSON carries
    values from the uploads (patient ID, descriptions) that no browser may sniff as HTML."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).setdefault("X-Content-Type-Options", "nosniff")
            await send(message)

        await self.app(scope, receive, send_wrapper)


def create_app(settings: Settings | None = None, run_relay: bool = True) -> FastAPI:
    settings = settings or get_settings()
    settings.check_safe()
    runtime = Runtime(settings)
    audit_writer = AuditWriter(lambda: runtime.sessions())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        relay = Relay(runtime) if run_relay else None
        if relay is not None:
            relay.start()
        try:
            yield
        finally:
            if relay is not None:
                relay.stop()
            await runtime.aclose()
            audit_writer.stop()
            runtime.close()

    app = FastAPI(title="LungCAD API", version=__version__, description=DESCRIPTION,
                  lifespan=lifespan)
    app.state.runtime = runtime
    app.state.metrics = Metrics(runtime)
    problems.install(app)
    app.include_router(jobs.router)
    app.include_router(dicomweb.router)
    app.include_router(health.router)
    app.include_router(session.router)
    app.include_router(viewer.router)
    app.include_router(viewer_original.router)
    app.include_router(feedback.router)
    static.install(app, settings)
    openapi.install(app)
    app.state.audit = audit_writer
    app.add_middleware(AuditMiddleware, sessions=lambda: runtime.sessions(),
                       writer=audit_writer)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.add_middleware(NoSniffMiddleware)
    if settings.cors_origins:  # a DICOMweb viewer (OHIF) served from another origin
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST", "DELETE"], allow_headers=CORS_HEADERS,
                           expose_headers=["Location", "Retry-After"], max_age=600)
    return app
