"""A light open-loop HTTP/1.1 load generator for GET requests over loopback.

Requests are scheduled at fixed times (``rate`` per second) whatever the server does, and each
latency is measured from its *scheduled* time, so a slow server is not hidden by the generator
waiting for it (no coordinated omission, as in wrk2). Requests go over a pool of keep-alive
connections; a request that finds no idle connection opens a new one.

It costs a few tens of microseconds of CPU per request, where a general-purpose client such as
httpx costs about a millisecond: on a 2-core machine the generator must not take the core the
server needs.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

WARM_CONNECTIONS = 16  # opened before the run: connection set-up is not what is measured


@dataclass
class LoadResult:
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    connections: int = 0


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def get(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length:
            await self.reader.readexactly(length)
        return status


async def run_load(url: str, headers: dict[str, str], rate: float, seconds: float,
                   max_connections: int = 256) -> LoadResult:
    """GET ``url`` at ``rate`` requests/s for ``seconds``; latencies in ms from schedule."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    result = LoadResult()
    idle: list[_Connection] = []
    limit = asyncio.Semaphore(max_connections)

    async def connect() -> _Connection:
        result.connections += 1
        return _Connection(*await asyncio.open_connection(host, port))

    async def one(scheduled: float) -> None:
        async with limit:
            reused = bool(idle)
            connection = idle.pop() if idle else await connect()
            try:
                try:
                    status = await connection.get(request)
                except (OSError, asyncio.IncompleteReadError) as exc:
                    closed = isinstance(exc, ConnectionResetError | BrokenPipeError) or (
                        isinstance(exc, asyncio.IncompleteReadError) and exc.partial == b"")
                    if not (reused and closed):
                        raise
                    # the server closed this idle keep-alive connection (uvicorn: after 5 s),
                    # as any client meets it: send again on a new one (the delay is counted)
                    connection.writer.close()
                    connection = await connect()
                    status = await connection.get(request)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                result.errors.append(f"{type(exc).__name__}: {exc}")
                connection.writer.close()
                return
            if status != 200:
                result.errors.append(f"HTTP {status}")
            result.latencies_ms.append((time.perf_counter() - scheduled) * 1000)
            idle.append(connection)

    warm = [asyncio.create_task(one(time.perf_counter())) for _ in range(WARM_CONNECTIONS)]
    await asyncio.gather(*warm)
    result.latencies_ms.clear()
    tasks = []
    begin = time.perf_counter() + 0.05
    for i in range(int(rate * seconds)):
        scheduled = begin + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    for connection in idle:
        connection.writer.close()
    return result
