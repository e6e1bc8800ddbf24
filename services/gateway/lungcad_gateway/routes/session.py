"""/v1/session: a dashboard session cookie issued for an API key.

The browser sends the API key once (``POST /v1/session``) and never keeps it: the answer sets
an ``HttpOnly; SameSite=Strict`` cookie that scripts cannot read, holding a token signed with
``LUNGCAD_SECRET_KEY`` (HMAC-SHA256) that names the API key (by id), the tenant, the reader and
an expiry. Every request re-checks that the key still exists and is not revoked, so revoking a
key ends its sessions. Unsafe methods authenticated by the cookie must also carry the session's
CSRF token in ``X-CSRF-Token`` (a custom header a cross-site form or image cannot send).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from lungcad.db.models import ApiKey, AuditEvent, Tenant
from lungcad.errors import LungcadError, Unauthorized
from lungcad.schemas import Problem
from lungcad_gateway.auth import hash_key

COOKIE = "lungcad_session"
CSRF_HEADER = "x-csrf-token"
DEFAULT_TTL_S = 8 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TOKEN_VERSION = "v1"

router = APIRouter(prefix="/v1/session", tags=["session"])
PROBLEMS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "content": {"application/problem+json": {}}}
    for code in (400, 401, 422)}  # 400: a body that is not JSON


class SessionCreate(BaseModel):
    api_key: Annotated[str, Field(min_length=1, max_length=200)]
    reader: Annotated[str | None, Field(max_length=100, description=(
        "Who is reading (recorded with feedback as the actor); defaults to the key's prefix."
    ))] = None


class SessionPublic(BaseModel):
    tenant: str
    actor: str
    expires_at: datetime
    csrf_token: str = Field(description="Send as X-CSRF-Token on POST/PUT/PATCH/DELETE.")


def _signing_key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"lungcad-dashboard-session", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_session(secret: str, payload: dict[str, Any]) -> str:
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    mac = hmac.new(_signing_key(secret), f"{TOKEN_VERSION}.{body}".encode(), hashlib.sha256)
    return f"{TOKEN_VERSION}.{body}.{_b64(mac.digest())}"


def read_session(secret: str, token: str, now: float | None = None) -> dict[str, Any] | None:
    """The payload of a valid, unexpired token, else None."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != TOKEN_VERSION or len(token) > 2000:
        return None
    mac = hmac.new(_signing_key(secret), f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256)
    try:
        if not hmac.compare_digest(_b64(mac.digest()), parts[2]):
            return None
        payload = json.loads(_unb64(parts[1]))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(payload, dict) or float(payload.get("exp", 0)) <= (now or time.time()):
        return None
    return payload


def _ttl(request: Request) -> int:
    settings = request.app.state.runtime.settings
    return int(getattr(settings, "session_ttl_s", DEFAULT_TTL_S))


def _secret(request: Request) -> str:
    return str(request.app.state.runtime.settings.secret_key)


def tenant_from_cookie(request: Request, session: Session) -> Tenant | None:
    """The tenant of a valid session cookie (None when there is no cookie).

    Raises Unauthorized for an expired/forged token or a revoked key, and for an unsafe method
    without the session's CSRF token. Sets ``request.state.session`` to the token's payload.
    """
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    payload = read_session(_secret(request), token)
    if payload is None:
        raise Unauthorized("The session expired or is not valid; sign in again.",
                           code="invalid_session")
    api_key = session.get(ApiKey, str(payload.get("kid", "")))
    if api_key is None or api_key.revoked_at is not None or api_key.tenant_id != payload.get("tid"):
        raise Unauthorized("The API key of this session was revoked; sign in again.",
                           code="invalid_session")
    if request.method not in SAFE_METHODS and not hmac.compare_digest(
            request.headers.get(CSRF_HEADER, ""), str(payload.get("csrf", ""))):
        raise LungcadError("A request authenticated by the session cookie must carry the "
                           "session's X-CSRF-Token header.", code="csrf_token_missing",
                           status=403)
    request.state.session = payload
    return api_key.tenant


def actor_for(request: Request) -> str:
    """Who made the request: the session's reader, or the API key's public prefix."""
    payload = getattr(request.state, "session", None)
    if payload:
        return str(payload.get("actor", "unknown"))
    header = request.headers.get("authorization", "")
    key = header[7:].strip() if header.lower().startswith("bearer ") else \
        request.headers.get("x-api-key", "")
    parts = key.split("_")
    return f"api-key {parts[1]}" if len(parts) >= 3 else "api-key"


def audit(session: Session, request: Request, tenant_id: str | None, actor: str, action: str,
          resource: str, outcome: int) -> None:
    """Add one audit event to ``session`` (the caller commits)."""
    client = request.client.host if request.client else None
    request.state.audited = True  # the audit middleware does not record this request again
    session.add(AuditEvent(tenant_id=tenant_id, actor=actor[:200], action=action,
                           resource=resource[:300], outcome=outcome, address=client))


def _public(payload: dict[str, Any], tenant: Tenant) -> SessionPublic:
    return SessionPublic(tenant=tenant.name, actor=payload["actor"],
                         expires_at=datetime.fromtimestamp(payload["exp"], UTC),
                         csrf_token=payload["csrf"])


@router.post("", status_code=201, response_model=SessionPublic, responses=PROBLEMS,
             summary="Sign in: exchange an API key for a session cookie")
def create_session(body: SessionCreate, request: Request, response: Response) -> SessionPublic:
    runtime = request.app.state.runtime
    with runtime.sessions() as session:
        api_key = session.scalars(select(ApiKey).where(
            ApiKey.key_hash == hash_key(body.api_key))).first()
        if api_key is None or api_key.revoked_at is not None:
            audit(session, request, None, "anonymous", "auth", "session", 401)
            session.commit()
            raise Unauthorized("The API key is not valid or has been revoked.",
                               code="invalid_api_key")
        reader = (body.reader or "").strip()
        actor = f"{reader} (key {api_key.prefix})" if reader else f"key {api_key.prefix}"
        now = int(time.time())
        payload = {"kid": api_key.id, "tid": api_key.tenant_id, "actor": actor,
                   "csrf": secrets.token_urlsafe(24), "iat": now, "exp": now + _ttl(request)}
        audit(session, request, api_key.tenant_id, actor, "auth", "session", 201)
        session.commit()
        tenant = api_key.tenant
        result = _public(payload, tenant)
    response.set_cookie(COOKIE, sign_session(_secret(request), payload), max_age=_ttl(request),
                        path="/", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
    response.headers["Cache-Control"] = "no-store"
    return result


@router.get("", response_model=SessionPublic, responses=PROBLEMS,
            summary="The current dashboard session (401 when signed out)")
def get_session(request: Request, response: Response) -> SessionPublic:
    runtime = request.app.state.runtime
    with runtime.sessions() as session:
        tenant = tenant_from_cookie(request, session)
        if tenant is None:
            raise Unauthorized("Not signed in.", code="missing_session")
        response.headers["Cache-Control"] = "no-store"
        return _public(request.state.session, tenant)


@router.delete("", status_code=204, summary="Sign out: clear the session cookie")
def delete_session(request: Request) -> Response:
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")
    return response
