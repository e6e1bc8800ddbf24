"""Signed webhook delivery.

Header ``X-LungCAD-Signature: sha256=<hex>`` is HMAC-SHA256 over the exact body bytes with the
tenant's webhook secret; for a while after a rotation ``X-LungCAD-Signature-Previous`` carries
the same with the previous secret (see :mod:`webhook_secrets`). The body carries a timestamp
and a delivery id so receivers can refuse replays.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from lungcad.db.models import Job
from lungcad.db.types import utcnow
from lungcad.schemas import WebhookEvent
from lungcad_gateway.presenters import job_public
from lungcad_gateway.webhook_target import CallbackRefused, Network, checked_address

SIGNATURE_HEADER = "X-LungCAD-Signature"
PREVIOUS_SIGNATURE_HEADER = "X-LungCAD-Signature-Previous"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    return hmac.compare_digest(sign(secret, body), header)


def event_body(job: Job, delivery_id: int) -> bytes:
    event = WebhookEvent(event=f"job.{job.state}", delivery_id=delivery_id, timestamp=utcnow(),
                         job=job_public(job))
    return json.dumps(event.model_dump(mode="json"), separators=(",", ":")).encode()


@dataclass(frozen=True)
class DeliveryResult:
    ok: bool
    status_code: int | None
    error: str | None
    duration_ms: int


def signature_headers(secrets: Sequence[str], body: bytes) -> dict[str, str]:
    """The body signed with the current secret and, when given, the previous one."""
    headers = {SIGNATURE_HEADER: sign(secrets[0], body)}
    if len(secrets) > 1:
        headers[PREVIOUS_SIGNATURE_HEADER] = sign(secrets[1], body)
    return headers


def deliver(client: httpx.Client, url: str, secrets: Sequence[str], body: bytes, event: str,
            delivery_id: int, allow: Sequence[Network] = ()) -> DeliveryResult:
    """POST the event to the checked address of ``url`` (see :mod:`webhook_target`), signed
    with ``secrets`` (the current one first); a refused address or a name that does not
    resolve is a failed attempt, with its reason."""
    start = time.perf_counter()
    try:
        address = checked_address(url, allow)
        target = httpx.URL(url)
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        response = client.post(target.copy_with(host=str(address)), content=body, headers={
            "Host": target.netloc.decode("ascii"), "Content-Type": "application/json",
            **signature_headers(secrets, body),
            "X-LungCAD-Event": event, "X-LungCAD-Delivery": str(delivery_id),
            "User-Agent": "LungCAD-Webhook/1"}, extensions=extensions)
        ok = 200 <= response.status_code < 300
        return DeliveryResult(ok, response.status_code, None if ok else f"HTTP "
                              f"{response.status_code}", int((time.perf_counter() - start) * 1000))
    except CallbackRefused as exc:
        error = f"refused: {exc.message}"
    except OSError as exc:  # the name did not resolve
        error = f"DNS: {exc}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"
    return DeliveryResult(False, None, error[:500], int((time.perf_counter() - start) * 1000))
