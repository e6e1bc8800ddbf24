"""Specific, machine-readable errors that reach the user as RFC 9457 problem documents.

Every code is stable: integrators match on ``code``, people read ``message``.
"""

from __future__ import annotations


class LungcadError(Exception):
    """An error with a stable code, a sentence for a person and an HTTP status."""

    code = "error"
    status = 400
    title = "Bad request"

    def __init__(self, message: str, code: str | None = None, status: int | None = None,
                 **extra: object) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.extra = extra


class InvalidInput(LungcadError):
    """The upload or the request is not acceptable (client error, never retried)."""

    code = "invalid_input"
    status = 422
    title = "Unprocessable upload"


class PayloadTooLarge(LungcadError):
    code = "payload_too_large"
    status = 413
    title = "Payload too large"


class NotFound(LungcadError):
    code = "not_found"
    status = 404
    title = "Not found"


def job_not_found(job_id: str) -> NotFound:
    return NotFound(f"No job {job_id[:100]} for this API key.", code="job_not_found")


class Conflict(LungcadError):
    code = "conflict"
    status = 409
    title = "Conflict"


class Unauthorized(LungcadError):
    code = "unauthorized"
    status = 401
    title = "Unauthorized"


class ServiceUnavailable(LungcadError):
    """A dependency (database, storage, broker) is down; the client should retry later."""

    code = "service_unavailable"
    status = 503
    title = "Service unavailable"


class TransientError(LungcadError):
    """A worker-side failure worth retrying (storage or database briefly unavailable)."""

    code = "transient"
    status = 503


class ProcessingError(LungcadError):
    """A job-level failure that retrying will not fix (bad series, unreadable pixels...)."""

    code = "processing_failed"
    status = 422
