"""API keys: ``lc_<prefix>_<secret>``, stored as SHA-256 (keys are 190-bit random, so a fast
hash is enough), scoped to a tenant, revocable."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from lungcad.db.models import ApiKey, Tenant
from lungcad.db.types import utcnow
from lungcad_gateway.webhook_secrets import new_secret

KEY_PREFIX = "lc_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh key and its public prefix."""
    prefix = secrets.token_hex(4)
    return f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(24)}", prefix


def get_or_create_tenant(session: Session, name: str) -> Tenant:
    tenant = session.scalars(select(Tenant).where(Tenant.name == name)).first()
    if tenant is None:
        tenant = Tenant(name=name, webhook_secret=new_secret())
        session.add(tenant)
        session.flush()
    return tenant


def create_key(session: Session, tenant_name: str, label: str | None = None) -> tuple[Tenant, str]:
    """Create the tenant if new, add a key, and return the plaintext key (shown once)."""
    tenant = get_or_create_tenant(session, tenant_name)
    key, prefix = new_key()
    session.add(ApiKey(tenant_id=tenant.id, prefix=prefix, key_hash=hash_key(key), label=label))
    session.flush()
    return tenant, key


def revoke_key(session: Session, key_or_prefix: str) -> int:
    """Revoke by full key or by prefix; returns how many keys were revoked."""
    if key_or_prefix.startswith(KEY_PREFIX) and key_or_prefix.count("_") >= 2:
        query = select(ApiKey).where(ApiKey.key_hash == hash_key(key_or_prefix))
    else:
        query = select(ApiKey).where(ApiKey.prefix == key_or_prefix)
    keys = [k for k in session.scalars(query) if k.revoked_at is None]
    for key in keys:
        key.revoked_at = utcnow()
    return len(keys)


def is_key_shaped(key: str) -> bool:
    return key.startswith(KEY_PREFIX) and len(key) <= 200


def tenant_for_key(session: Session, key: str) -> Tenant | None:
    if not is_key_shaped(key):
        return None
    api_key = session.scalars(select(ApiKey).options(joinedload(ApiKey.tenant))
                              .where(ApiKey.key_hash == hash_key(key))).first()
    if api_key is None or api_key.revoked_at is not None:
        return None
    return api_key.tenant
