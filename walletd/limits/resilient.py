"""Limits: the facade the server uses, on Redis with a fallback to memory (SPEC §3).

Calls go to Redis when it is configured, to memory when not. A Redis outage must not
become a walletd outage: any Redis error moves this call and every later one to the
in-memory limiter (the full per-key limits, per process) until a probe sees Redis answer
again. While Redis is healthy nothing is counted in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from redis.asyncio import Redis

from walletd.config import Settings
from walletd.limits.memory import MemoryRequestLimiter, MemoryStreamCap
from walletd.limits.model import Lease, Verdict, stream_retry_after
from walletd.limits.redis import RedisLimits
from walletd.ops.redis import REDIS_ERRORS, connect

log = logging.getLogger("walletd.limits")

PROBE_INTERVAL_S = 1.0


class Limits:
    """Request window and stream cap for the whole process; one per process.

    `hit`, `acquire_stream` and `Lease.release` never raise a Redis error. `clock` drives
    the in-memory limiter (Redis uses its own TIME); `probe_interval_s` is how often an
    unreachable Redis is pinged.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        redis: Redis | None = None,
        clock: Callable[[], float] = time.monotonic,
        probe_interval_s: float = PROBE_INTERVAL_S,
    ) -> None:
        self._settings = settings
        self._client = redis  # the app's client; without one (tools, tests) start() opens its own
        self._owned_client: Redis | None = None
        self._clock = clock
        self._probe_interval_s = probe_interval_s
        retry_after = stream_retry_after(settings.stream_lease_ttl_s)
        self._requests = MemoryRequestLimiter(
            settings.rate_limit_requests, settings.rate_limit_window_s, clock
        )
        # Failed authentications by client address (its own limiter: the address alone).
        self._auth_failures = MemoryRequestLimiter(
            settings.auth_failure_limit, settings.rate_limit_window_s, clock
        )
        self._streams = MemoryStreamCap(settings.rate_limit_streaming_connections, retry_after)
        self._redis: RedisLimits | None = None
        self._degraded = False
        self._down_since = 0.0
        self._lost = asyncio.Event()  # set while degraded: wakes the probe
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def backend(self) -> str:
        """Where new calls go: "redis", or "memory" (no Redis configured, or degraded)."""
        return "memory" if self._usable_redis() is None else "redis"

    @property
    def degraded(self) -> bool:
        """True while Redis is configured but unreachable, and calls run on memory."""
        return self._degraded

    async def start(self) -> None:
        """Connect Redis (if configured) and start the lease refresher and the probe.

        Never fails on an unreachable Redis: it starts degraded and the probe takes over.
        """
        url = self._settings.redis_url
        if url is None or self._redis is not None:
            return
        s = self._settings
        if self._client is None:
            self._client = self._owned_client = connect(url)
        self._redis = RedisLimits(
            self._client,
            prefix=s.redis_prefix,
            limit=s.rate_limit_requests,
            window_s=s.rate_limit_window_s,
            stream_cap=s.rate_limit_streaming_connections,
            lease_ttl_s=s.stream_lease_ttl_s,
            retry_after_s=stream_retry_after(s.stream_lease_ttl_s),
            on_error=self._fall_back,
        )
        try:
            await self._redis.ping()
        except REDIS_ERRORS as exc:
            self._fall_back(exc)
        self._tasks = [
            asyncio.create_task(self._redis.run_refresher(), name="limits-lease-refresher"),
            asyncio.create_task(self._probe(self._redis), name="limits-redis-probe"),
        ]

    async def close(self) -> None:
        """Stop the tasks (and close a Redis client of its own). Leases still held are not
        released: their streams own them, and Redis leases lapse within the TTL."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._redis is not None:
            self._redis.close()
        if self._owned_client is not None:
            await self._owned_client.aclose()

    def hit_now(self, subject: str) -> Verdict | None:
        """`hit`, answered at once while calls go to memory; None while they go to Redis
        (then await `hit`). Most servers run without Redis: their requests need no
        coroutine for it (bench/README.md, round two)."""
        if self._usable_redis() is not None:
            return None
        return self._requests.hit(subject)

    async def hit(self, subject: str) -> Verdict:
        """Count a request of `subject` if its window has room; refused ones are not counted."""
        redis = self._usable_redis()
        if redis is None:
            return self._requests.hit(subject)
        try:
            return await redis.hit(subject)
        except REDIS_ERRORS as exc:
            self._fall_back(exc)
            return self._requests.hit(subject)

    def auth_window_now(self, address: str) -> Verdict | None:
        """`auth_window`, answered at once while calls go to memory; else None."""
        if self._usable_redis() is not None:
            return None
        return self._auth_failures.peek(address)

    async def auth_window(self, address: str) -> Verdict:
        """Whether `address` may try a key now: refused (not `allowed`) once it has failed
        to authenticate AUTH_FAILURE_LIMIT times in the window (SPEC §3). Counts nothing:
        only failures count."""
        redis = self._usable_redis()
        if redis is not None:
            try:
                return await redis.peek(
                    _auth_subject(address), limit=self._settings.auth_failure_limit
                )
            except REDIS_ERRORS as exc:
                self._fall_back(exc)
        return self._auth_failures.peek(address)

    async def auth_failed(self, address: str) -> None:
        """Count one failed authentication of `address` (a missing or bad key)."""
        redis = self._usable_redis()
        if redis is not None:
            try:
                await redis.hit(_auth_subject(address), limit=self._settings.auth_failure_limit)
                return
            except REDIS_ERRORS as exc:
                self._fall_back(exc)
        self._auth_failures.hit(address)

    async def acquire_stream(self, subject: str, stream_id: str) -> Lease:
        """Hold a stream slot of `subject` until the lease is released.

        `stream_id` must be unique per stream. Raises errors.TooManyStreams at the cap.
        """
        redis = self._usable_redis()
        if redis is not None:
            try:
                return await redis.acquire(subject, stream_id)
            except REDIS_ERRORS as exc:
                self._fall_back(exc)
        # Streams this process still holds on Redis count too: the cap is per process here.
        held = self._redis.held(subject) if self._redis is not None else 0
        return self._streams.acquire(subject, stream_id, held_elsewhere=held)

    def _usable_redis(self) -> RedisLimits | None:
        """The Redis backend if calls go there now: configured, reachable, not closed."""
        redis = self._redis
        if redis is None or self._degraded or redis.closed:
            return None
        return redis

    def _fall_back(self, exc: BaseException) -> None:
        if self._degraded:
            return
        self._degraded = True
        self._down_since = self._clock()
        self._lost.set()
        # Only the exception's class: its text names the server, and the URL may hold a password.
        log.warning("redis_unreachable", extra={"error": type(exc).__name__, "fallback": "memory"})

    async def _probe(self, redis: RedisLimits) -> None:
        """While degraded, ping Redis every probe interval; when it answers, restore this
        process's leases (Redis may have restarted empty), then route calls back to it."""
        while True:
            await self._lost.wait()
            await asyncio.sleep(self._probe_interval_s)
            try:
                await redis.ping()
                await redis.refresh()
            except REDIS_ERRORS:
                continue
            except Exception:  # a bug must not end the probe: we would stay degraded for good
                log.exception("redis_probe_failed")
                continue
            self._degraded = False
            self._lost.clear()
            outage_s = round(self._clock() - self._down_since, 3)
            log.info("redis_recovered", extra={"outage_s": outage_s})


def _auth_subject(address: str) -> str:
    """The Redis subject of `address`'s failed authentications, apart from request windows."""
    return f"authfail:{address}"
