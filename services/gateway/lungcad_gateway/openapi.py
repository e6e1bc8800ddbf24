"""The authentication of the API in its OpenAPI document.

The routes check credentials in a dependency (``deps.current_tenant``) that FastAPI does not
describe, so this adds the security schemes (API key as bearer token or ``X-API-Key``, or the
dashboard's session cookie) and, on every tenant-scoped operation, the requirement and the 401 /
429 answers. Clients and schema-driven test tools (schemathesis' ``ignored_auth``) read it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

SCHEMES = {
    "apiKeyBearer": {"type": "http", "scheme": "bearer",
                     "description": "An API key: `Authorization: Bearer lc_...`"},
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "session": {"type": "apiKey", "in": "cookie", "name": "lungcad_session",
                "description": "The dashboard session (POST /v1/session)"},
}
SCOPED = ("/v1/jobs", "/v1/worklist")
PROBLEM = {"$ref": "#/components/schemas/Problem"}


def install(app: FastAPI) -> None:
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schema.setdefault("components", {}).setdefault("securitySchemes", {}).update(SCHEMES)
        for path, operations in schema.get("paths", {}).items():
            if not path.startswith(SCOPED):
                continue
            for operation in operations.values():
                operation["security"] = [{name: []} for name in SCHEMES]
                responses = operation.setdefault("responses", {})
                for status, text in (("401", "Missing, unknown or revoked API key"),
                                     ("429", "Rate limited (see Retry-After)")):
                    responses.setdefault(status, {"description": text, "content": {
                        "application/problem+json": {"schema": PROBLEM}}})
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
