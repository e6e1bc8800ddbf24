"""RFC 9457 problem+json responses for every error the API returns."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from lungcad.errors import LungcadError
from lungcad.storage.base import StorageUnavailable

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_S = "5"
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
               415: "unsupported_media_type", 422: "validation_error", 429: "rate_limited",
               500: "internal_error", 503: "service_unavailable"}
# Validation errors raised with their own code (a PydanticCustomError type) keep it.
_SPECIFIC_VALIDATION_CODES = frozenset({"invalid_date"})
_TITLES = {400: "Bad request", 401: "Unauthorized", 404: "Not found", 409: "Conflict",
           413: "Payload too large", 422: "Unprocessable request", 429: "Too many requests",
           503: "Service unavailable"}


def problem(status: int, code: str, detail: str, instance: str | None = None,
            headers: dict[str, str] | None = None, **extra: object) -> JSONResponse:
    body: dict[str, object] = {
        "type": f"https://lungcad.org/problems/{code}", "title": _TITLES.get(status, "Error"),
        "status": status, "detail": detail, "code": code,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route answers at this path (Starlette's own 405 names only the first
    route that matches the path, e.g. GET where DELETE works too): each method is tried
    against the routes as the router itself would."""
    routes = request.app.router.routes
    return [method for method in METHODS
            if any(route.matches({**request.scope, "method": method})[0] == Match.FULL
                   for route in routes)]


def install(app: FastAPI) -> None:
    @app.exception_handler(LungcadError)
    async def _lungcad(request: Request, exc: LungcadError) -> JSONResponse:
        retry_after = str(getattr(exc, "retry_after_s", RETRY_AFTER_S))
        headers = {"Retry-After": retry_after} if exc.status in (429, 503) else None
        if exc.status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        return problem(exc.status, exc.code, exc.message, request.url.path, headers, **exc.extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return problem(exc.status_code, code, str(exc.detail), request.url.path, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")}
                  for e in exc.errors()]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        detail = f"{'.'.join(str(x) for x in first['loc'])}: {first['msg']}"
        kind = exc.errors()[0].get("type") if errors else None
        code = kind if kind in _SPECIFIC_VALIDATION_CODES else "validation_error"
        return problem(422, code, detail, request.url.path, errors=errors)

    @app.exception_handler(StorageUnavailable)
    async def _storage(request: Request, exc: StorageUnavailable) -> JSONResponse:
        log.warning("storage unavailable: %s", exc)
        return problem(503, "storage_unavailable", "Object storage is unavailable; nothing was "
                       "accepted. Retry later.", request.url.path, {"Retry-After": RETRY_AFTER_S})

    @app.exception_handler(OperationalError)
    @app.exception_handler(PoolTimeout)
    async def _database(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable: %s", str(exc).splitlines()[0] if str(exc) else exc)
        return problem(503, "database_unavailable", "The database is unavailable; nothing was "
                       "accepted. Retry later.", request.url.path, {"Retry-After": RETRY_AFTER_S})

    @app.exception_handler(DBAPIError)
    async def _dbapi(request: Request, exc: DBAPIError) -> JSONResponse:
        if exc.connection_invalidated:
            return await _database(request, exc)
        log.exception("database error")
        return problem(500, "internal_error", "Internal error.", request.url.path)
