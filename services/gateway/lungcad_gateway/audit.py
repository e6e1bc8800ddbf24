"""The audit trail of patient data: one ``AuditEvent`` per API request that touches a job.

``AuditMiddleware`` records every request under ``/v1/jobs`` and ``/v1/worklist`` just before
its response starts: who (the API key's prefix or the dashboard reader), what (action and
resource), when, the outcome (HTTP status, refusals included) and the client address. Actions:
``read`` (GET), ``export`` (downloading a result or artifact file), ``write`` (POST/PUT/PATCH),
``delete`` (DELETE). A route that records its own, richer event in its transaction (viewer
arrays, feedback) sets ``request.state.audited`` and is not recorded twice.

Rows are never changed: on Postgres, migration 0003 adds a trigger that refuses UPDATE, DELETE
and TRUNCATE on ``audit_events`` for every role, the application's included.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from anyio import to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lungcad.db.models import AuditEvent

log = logging.getLogger(__name__)
AUDITED = re.compile(r"^/v1/(jobs|worklist)(/|$)")
EXPORT = re.compile(r"^/v1/jobs/[^/]+/(result|artifacts/.+|viewer/(volume|mask))$")
_ACTIONS = {"DELETE": "delete", "POST": "write", "PUT": "write", "PATCH": "write"}


def action_for(method: str, path: str) -> str:
    if method in _ACTIONS:
        return _ACTIONS[method]
    return "export" if EXPORT.match(path) else "read"


def actor_of(scope: Scope) -> str:
    """Who made the request: the dashboard reader, else the API key's public prefix."""
    state = scope.get("state") or {}
    session = state.get("session")
    if session:
        return str(session.get("actor", "unknown"))[:200]
    headers = {k.lower(): v for k, v in scope.get("headers", [])}
    auth = headers.get(b"authorization", b"").decode("latin-1")
    key = auth[7:].strip() if auth.lower().startswith("bearer ") else \
        headers.get(b"x-api-key", b"").decode("latin-1")
    parts = key.split("_")
    if not key:
        return "anonymous"
    prefix = parts[1] if len(parts) >= 3 and re.fullmatch(r"[0-9a-f]{8}", parts[1]) else "?"
    return f"api-key {prefix}"


class AuditMiddleware:
    def __init__(self, app: ASGIApp, sessions: Any) -> None:
        self.app = app
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not AUDITED.match(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        recorded = False

        async def recording_send(message: Message) -> None:
            nonlocal recorded
            if message["type"] == "http.response.start" and not recorded:
                # Recorded before the first byte of the answer leaves: a client never holds
                # data whose access is not in the trail.
                recorded = True
                location = None
                for name, value in message.get("headers", []):
                    if name.lower() == b"location":
                        location = value.decode("latin-1")
                await self._maybe_record(scope, int(message["status"]), location)
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            if not recorded:  # the app failed before answering
                await self._maybe_record(scope, 500, None)

    async def _maybe_record(self, scope: Scope, status: int, location: str | None) -> None:
        state = scope.get("state") or {}
        # 503: a dependency (usually the database) is down and nothing was served or accepted;
        # trying to record it would only delay the answer by another connect timeout.
        if not state.get("audited") and status != 503:
            await to_thread.run_sync(self._record, scope, status, location)

    def _record(self, scope: Scope, status: int, location: str | None) -> None:
        state = scope.get("state") or {}
        path = scope.get("path", "")
        resource = location if location and status < 300 else path
        client = scope.get("client")
        event = AuditEvent(tenant_id=state.get("tenant_id"), actor=actor_of(scope),
                           action=action_for(scope.get("method", "GET"), path),
                           resource=resource[:300], outcome=status,
                           address=client[0][:64] if client else None)
        try:
            with self.sessions() as session:
                session.add(event)
                session.commit()
        except Exception as exc:  # noqa: BLE001 - the database is down: the request failed too
            log.error("audit event not recorded: %s %s %s -> %s (%s)", event.actor,
                      event.action, event.resource, status, type(exc).__name__)
