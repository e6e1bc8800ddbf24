"""Broker checks used by /readyz and /metrics (Redis or the embedded file-system broker)."""

from __future__ import annotations

from pathlib import Path

from lungcad.celery_app import QUEUE_INFERENCE, QUEUE_PREPROCESS
from lungcad.settings import Settings


def ping(settings: Settings) -> None:
    """Raise when the broker cannot be reached."""
    if settings.broker_url.startswith("filesystem"):
        folder = settings.broker_dir / "queue"
        folder.mkdir(parents=True, exist_ok=True)
        return
    import redis

    client = redis.Redis.from_url(settings.broker_url, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    finally:
        client.close()


def queue_depths(settings: Settings) -> dict[str, int]:
    queues = (QUEUE_PREPROCESS, QUEUE_INFERENCE)
    if settings.broker_url.startswith("filesystem"):
        folder = Path(settings.broker_dir / "queue")
        files = [p.name for p in folder.glob("*.msg")] if folder.exists() else []
        return {q: sum(1 for name in files if f"_{q}." in name or name.endswith(f".{q}.msg"))
                for q in queues}
    import redis

    client = redis.Redis.from_url(settings.broker_url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return {q: int(client.llen(q)) for q in queues}
    finally:
        client.close()
