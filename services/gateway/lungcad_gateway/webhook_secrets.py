"""A tenant's webhook secret: read it, rotate it with an overlap.

After a rotation webhooks are signed with the new secret (``X-LungCAD-Signature``) and, until
the overlap ends, also with the previous one (``X-LungCAD-Signature-Previous``), so a receiver
keeps verifying while its secret is being replaced. A second rotation within the overlap drops
the oldest secret: only the two newest ever sign.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from lungcad.db.models import Tenant
from lungcad.db.types import utcnow
from lungcad.errors import NotFound


def new_secret() -> str:
    return secrets.token_hex(32)


def tenant_named(session: Session, name: str) -> Tenant:
    tenant = session.scalars(select(Tenant).where(Tenant.name == name)).first()
    if tenant is None:
        raise NotFound(f"No tenant {name!r} (create-key creates a tenant).",
                       code="tenant_not_found")
    return tenant


def rotate(tenant: Tenant, overlap_s: float) -> None:
    """A new secret; the current one keeps signing for ``overlap_s`` seconds (0: none)."""
    now = utcnow()
    tenant.previous_webhook_secret = tenant.webhook_secret if overlap_s > 0 else None
    tenant.previous_webhook_secret_until = (now + timedelta(seconds=overlap_s)
                                            if overlap_s > 0 else None)
    tenant.webhook_secret = new_secret()


def signing_secrets(tenant: Tenant, now: datetime | None = None) -> list[str]:
    """The secrets a webhook is signed with now: the current one, then the previous one while
    its overlap lasts."""
    now = now or utcnow()
    until = tenant.previous_webhook_secret_until
    if tenant.previous_webhook_secret and until is not None and until > now:
        return [tenant.webhook_secret, tenant.previous_webhook_secret]
    return [tenant.webhook_secret]
