"""Per-API-key token bucket.

Each key gets ``rate_limit_per_s`` tokens a second, up to ``rate_limit_burst``; a request takes
one. An empty bucket answers 429 ``rate_limited`` with ``Retry-After`` (whole seconds until a
token is back). With a Redis broker the buckets live in Redis (one Lua script: atomic, shared by
every gateway replica, keys expire when idle); with the embedded file broker they live in this
process's memory. When Redis cannot be reached the request is let through (logged): the limiter
protects capacity, it must not take the API down with it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from lungcad.errors import LungcadError
from lungcad.settings import Settings

log = logging.getLogger(__name__)
REDIS_PREFIX = "lungcad:ratelimit:"

# KEYS[1]: bucket; ARGV: rate, burst, now (s), cost. Returns {allowed, retry_after_ms}.
_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil then tokens = burst; ts = now end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed = 0
local wait_ms = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  wait_ms = math.ceil((cost - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, wait_ms}
"""


class RateLimited(LungcadError):
    code = "rate_limited"
    status = 429
    title = "Too many requests"

    def __init__(self, retry_after_s: int, limit_per_s: float) -> None:
        super().__init__(f"Too many requests for this API key (limit {limit_per_s:g}/s); retry "
                         f"after {retry_after_s} s.", retry_after_s=retry_after_s)
        self.retry_after_s = retry_after_s


@dataclass
class _Bucket:
    tokens: float
    ts: float


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        self.rate = settings.rate_limit_per_s
        self.burst = settings.rate_limit_burst
        self._redis: Any = None
        self._async_redis: Any = None
        self._async_script: Any = None
        self._broker_url = settings.broker_url
        if self.enabled and settings.broker_url.startswith(("redis://", "rediss://")):
            import redis

            self._redis = redis.Redis.from_url(settings.broker_url, socket_connect_timeout=0.5,
                                               socket_timeout=0.5)
            self._script = self._redis.register_script(_LUA)
        self._local: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def check(self, api_key: str) -> None:
        """Take one token for ``api_key``; raise RateLimited when there is none."""
        redis_key = self._redis_key(api_key)
        if redis_key is None:
            return
        try:
            answer = self._script(keys=[redis_key], args=self._script_args())
        except Exception as exc:  # noqa: BLE001 - fail open: the limiter must not cause outages
            _let_through(exc)
            return
        self._raise_if_waiting(_wait_ms(answer))

    async def check_async(self, api_key: str) -> None:
        """``check`` for the event loop: the Redis round trip is awaited, never blocked on."""
        redis_key = self._redis_key(api_key)
        if redis_key is None:
            return
        try:
            if self._async_script is None:
                import redis.asyncio

                self._async_redis = redis.asyncio.Redis.from_url(
                    self._broker_url, socket_connect_timeout=0.5, socket_timeout=0.5)
                self._async_script = self._async_redis.register_script(_LUA)
            answer = await self._async_script(keys=[redis_key], args=self._script_args())
        except Exception as exc:  # noqa: BLE001 - fail open, as in check()
            _let_through(exc)
            return
        self._raise_if_waiting(_wait_ms(answer))

    def _redis_key(self, api_key: str) -> str | None:
        """The Redis bucket to take the token from; None when it was decided here (the limit
        is off, or the buckets live in this process: RateLimited raised when empty)."""
        if not self.enabled:
            return None
        bucket = hashlib.sha256(api_key.encode()).hexdigest()[:32]
        if self._redis is None:
            self._raise_if_waiting(self._take_local(bucket))
            return None
        return REDIS_PREFIX + bucket

    def _script_args(self) -> list[object]:
        return [self.rate, self.burst, f"{time.time():.6f}", 1]

    def _raise_if_waiting(self, wait_ms: int | None) -> None:
        if wait_ms is not None:
            raise RateLimited(max(1, math.ceil(wait_ms / 1000)), self.rate)

    def _take_local(self, bucket: str) -> int | None:
        now = time.monotonic()
        with self._lock:
            state = self._local.get(bucket)
            if state is None:
                state = self._local[bucket] = _Bucket(float(self.burst), now)
                if len(self._local) > 100_000:  # idle keys: drop the full buckets
                    for name in [k for k, v in self._local.items() if v.tokens >= self.burst]:
                        del self._local[name]
            state.tokens = min(self.burst, state.tokens + (now - state.ts) * self.rate)
            state.ts = now
            if state.tokens >= 1:
                state.tokens -= 1
                return None
            return math.ceil((1 - state.tokens) / self.rate * 1000)

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()

    async def aclose(self) -> None:
        """Close the event loop's Redis client (``check_async``), in the loop that used it."""
        if self._async_redis is not None:
            client, self._async_redis, self._async_script = self._async_redis, None, None
            await client.aclose()


def _let_through(exc: Exception) -> None:
    log.warning("rate limiter unavailable, request let through: %s", exc)


def _wait_ms(answer: Any) -> int | None:
    """The script's ``{allowed, wait_ms}``: None when the token was taken."""
    allowed, wait_ms = answer
    return None if int(allowed) == 1 else int(wait_ms)
