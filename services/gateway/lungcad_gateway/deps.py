"""FastAPI dependencies: the session, the authenticated tenant, the store."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from typing import Annotated

from fastapi import Depends, Query, Request
from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError
from sqlalchemy.orm import Session

from lungcad.db.models import Tenant
from lungcad.errors import Unauthorized
from lungcad.settings import Settings
from lungcad.storage import ObjectStore
from lungcad_gateway.auth import tenant_for_key
from lungcad_gateway.routes.session import tenant_from_cookie
from lungcad_gateway.runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_settings_dep(runtime: RuntimeDep) -> Settings:
    return runtime.settings


def get_db(runtime: RuntimeDep) -> Iterator[Session]:
    session = runtime.sessions()
    try:
        yield session
    finally:
        session.close()


async def get_store(runtime: RuntimeDep) -> ObjectStore:
    return runtime.store


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
# Free-text search: printable text only. A NUL reached Postgres as a 500 ("A string literal
# cannot contain NUL"); control characters now get the usual 422 problem.
SearchText = Annotated[str | None, Query(max_length=100, pattern=r"^[^\x00-\x1f\x7f]*$",
                                         description="Patient ID or series text")]
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_date(value: object) -> object:
    """The schema says ``format: date``; pydantic alone would also read ``0`` or ``1e9`` as a
    Unix time."""
    if isinstance(value, str) and not ISO_DATE.fullmatch(value):
        raise PydanticCustomError("invalid_date", "Expected a date as YYYY-MM-DD, got {value}.",
                                  {"value": repr(value[:40])})
    return value


# A calendar date in a query (422 ``invalid_date`` otherwise).
QueryDate = Annotated[date | None, BeforeValidator(_iso_date)]
SessionDep = Annotated[Session, Depends(get_db)]
StoreDep = Annotated[ObjectStore, Depends(get_store)]


def api_key_from(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("x-api-key") or None


def current_tenant(request: Request, session: SessionDep, runtime: RuntimeDep) -> Tenant:
    return authenticate(request, session, runtime)


def authenticate(request: Request, session: Session, runtime: Runtime,
                 rate_checked: bool = False) -> Tenant:
    """The tenant of the request's API key or dashboard session; raises Unauthorized.
    ``rate_checked``: the caller already counted this request against the key's limit."""
    key = api_key_from(request)
    if key:
        if not rate_checked:
            runtime.rate_limiter.check(key)  # before the key lookup: a flood costs no queries
    else:
        session_tenant = tenant_from_cookie(request, session)
        if session_tenant is not None:
            runtime.rate_limiter.check(f"session:{request.state.session.get('kid', '')}")
            request.state.tenant_id = session_tenant.id
            return session_tenant
    if not key:
        raise Unauthorized("Send your API key as 'Authorization: Bearer <key>' or 'X-API-Key'.",
                           code="missing_api_key")
    tenant = tenant_for_key(session, key)
    if tenant is None:
        raise Unauthorized("The API key is not valid or has been revoked.",
                           code="invalid_api_key")
    request.state.tenant_id = tenant.id
    return tenant


TenantDep = Annotated[Tenant, Depends(current_tenant)]
