"""The one way walletd opens Redis: sub-second timeouts and no hidden retries (SPEC §3).

redis-py's defaults retry with backoff and wait up to about a minute on a connect that
hangs; a limiter that stalls a request that long is worse than one that falls back to
memory at once. Callers treat any `REDIS_ERRORS` as "Redis unreachable".
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import redis.asyncio as redis
from aiohttp import web
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from walletd.appkeys import REDIS

TIMEOUT_S = 0.5
# RedisError covers ConnectionError and TimeoutError of redis-py (not the builtins);
# OSError covers what a socket raises before redis-py wraps it.
REDIS_ERRORS = (RedisError, OSError)


def connect(url: str, *, timeout_s: float = TIMEOUT_S) -> redis.Redis:
    """A client for `url` (connections are made lazily, on first use)."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=30,
        decode_responses=False,
    )


async def lifetime(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the app's one client (app[REDIS]) is closed after everything that
    uses it has stopped (it is registered first, so it is torn down last)."""
    yield
    await app[REDIS].aclose()
