"""The audit trail of patient data: one ``AuditEvent`` per API request that touches a job.

``AuditMiddleware`` records every request under ``/v1/jobs``, ``/v1/worklist`` and
``/v1/dicomweb`` just before its response starts: who (the API key's prefix or the dashboard
reader), what (action and resource), when, the outcome (HTTP status, refusals included) and
the client address. Actions: ``read`` (GET), ``export`` (downloading a result or artifact
file), ``write`` (POST/PUT/PATCH), ``delete`` (DELETE). A route that records its own, richer
event in its transaction (viewer arrays, feedback) sets ``request.state.audited`` and is not
recorded twice.

Rows are never changed: on Postgres, migration 0003 adds a trigger that refuses UPDATE, DELETE
and TRUNCATE on ``audit_events`` for every role, the application's included.

Writes, deletes, exports and refusals are committed before the response starts. Plain reads
(status polls, lists) are stamped at request time and written by :class:`AuditWriter` in one
transaction every ``FLUSH_S``: a poll then costs no database commit of its own (integrators
poll often), at the price of losing at most ``FLUSH_S`` of read events if the process dies.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

from anyio import to_thread
from sqlalchemy import insert
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lungcad.db.models import AuditEvent
from lungcad.db.types import utcnow

log = logging.getLogger(__name__)
FLUSH_S = 0.2
_COLUMNS = ("created_at", "tenant_id", "actor", "action", "resource", "outcome", "address")


class AuditWriter:
    """Batches read events: one INSERT transaction per ``FLUSH_S`` from a side thread."""

    def __init__(self, sessions: Any, interval_s: float = FLUSH_S) -> None:
        self.sessions = sessions
        self.interval_s = interval_s
        self._pending: list[AuditEvent] = []
        self._lock = threading.Lock()  # guards _pending
        self._flushing = threading.Lock()  # one batch in flight at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def submit(self, event: AuditEvent) -> None:
        with self._lock:
            self._pending.append(event)
        if self._thread is None:
            self.start()

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="audit-writer",
                                                daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.flush()

    def flush(self) -> int:
        """Write what is pending. Returns only once every event submitted before the call is
        committed, including a batch the writer thread was committing at that moment."""
        with self._flushing:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                return 0
            rows = [{c: getattr(e, c) for c in _COLUMNS} for e in batch]
            try:
                with self.sessions() as session:
                    session.execute(insert(AuditEvent), rows)  # one executemany, no ORM units
                    session.commit()
            except Exception as exc:  # noqa: BLE001 - database down: keep them for the next try
                log.error("audit batch of %d not recorded yet (%s)", len(batch),
                          type(exc).__name__)
                with self._lock:
                    self._pending = batch + self._pending
                return 0
            return len(batch)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()
AUDITED = re.compile(r"^/v1/(jobs|worklist|dicomweb)(/|$)")
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
    def __init__(self, app: ASGIApp, sessions: Any, writer: AuditWriter | None = None) -> None:
        self.app = app
        self.sessions = sessions
        self.writer = writer

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
        if state.get("audited") or status == 503:
            return
        event = self._event(scope, status, location)
        if self.writer is not None and event.action == "read" and status < 400:
            self.writer.submit(event)
            return
        await to_thread.run_sync(self._write, event)

    @staticmethod
    def _event(scope: Scope, status: int, location: str | None) -> AuditEvent:
        state = scope.get("state") or {}
        path = scope.get("path", "")
        # Postgres text cannot hold a NUL: a path carrying one (%00) is recorded re-encoded.
        resource = (location if location and status < 300 else path).replace("\x00", "%00")
        client = scope.get("client")
        return AuditEvent(created_at=utcnow(), tenant_id=state.get("tenant_id"),
                          actor=actor_of(scope),
                          action=action_for(scope.get("method", "GET"), path),
                          resource=resource[:300], outcome=status,
                          address=client[0][:64] if client else None)

    def _write(self, event: AuditEvent) -> None:
        status = event.outcome
        try:
            with self.sessions() as session:
                session.add(event)
                session.commit()
        except Exception as exc:  # noqa: BLE001 - the database is down: the request failed too
            log.error("audit event not recorded: %s %s %s -> %s (%s)", event.actor,
                      event.action, event.resource, status, type(exc).__name__)
