"""The HTTP receive floor for ``bench_gateway.py``: an ASGI app that reads a request body and
throws it away, answering its length. Uploading to it under the same uvicorn as the gateway
shows what the server alone costs on this machine, before any parsing, hashing or disk."""

from __future__ import annotations

from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": str(size).encode()})
