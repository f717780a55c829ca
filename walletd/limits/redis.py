"""Limits shared by every process on one Redis: atomic Lua scripts on Redis time.

Each script reads `redis.call('TIME')`, so instances with skewed clocks still agree on
the window. Scripts are registered (EVALSHA, re-sent after SCRIPT FLUSH or a restart).
Request windows are checked in batches (batch.py). Every method may raise `REDIS_ERRORS`;
the fallback facade decides what that means.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
from collections.abc import Callable

import redis.asyncio as redis

from walletd.errors import TooManyStreams
from walletd.limits.batch import WindowBatcher
from walletd.limits.model import Verdict
from walletd.ops.redis import REDIS_ERRORS

log = logging.getLogger("walletd.limits")

# Stream leases. KEYS[1]: the subject's leases, stream ids scored by expiry (ms of Redis
# time). ARGV: cap, TTL (ms), stream id. Drops lapsed leases, then adds this one if under
# the cap (re-acquiring a held id is a refresh). Returns 1 if acquired, else 0.
ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[3])
    and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[3])
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
"""

# Lease refresh. KEYS[1]: the subject's leases. ARGV: TTL (ms), then the stream ids this
# process still holds. A plain ZADD, not XX: a live stream whose lease was lost (Redis
# restarted empty, or a refresh came late) must count against the cap again.
REFRESH_LUA = """
local t = redis.call('TIME')
local expiry = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], expiry, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return #ARGV - 1
"""


class RedisLease:
    """A slot held in Redis, refreshed by its RedisLimits until released."""

    __slots__ = ("_owner", "key", "released", "stream_id")

    def __init__(self, owner: RedisLimits, key: str, stream_id: str) -> None:
        self._owner = owner
        self.key = key
        self.stream_id = stream_id
        self.released = False

    async def release(self) -> None:
        """ZREM the lease. On a Redis error it is only logged: the lease is no longer
        refreshed, so it lapses within the TTL anyway."""
        if self.released:
            return
        self.released = True
        await self._owner.free(self)

    def release_now(self) -> bool:
        return self.released  # a held Redis slot is freed by a round trip: release()


class RedisLimits:
    """Request window and stream leases in Redis, plus the refresher of this process's leases."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str,
        limit: int,
        window_s: float,
        stream_cap: int,
        lease_ttl_s: float,
        retry_after_s: int,
        on_error: Callable[[BaseException], None] = lambda exc: None,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._limit = limit
        self._window_us = max(1, round(window_s * 1_000_000))
        self._stream_cap = stream_cap
        self._ttl_ms = max(1, math.ceil(lease_ttl_s * 1000))
        self.refresh_period_s = lease_ttl_s / 3
        self._retry_after_s = retry_after_s
        self._on_error = on_error
        # Request windows (a sliding-window log, see memory.py for why a log): WINDOWS_LUA.
        self._windows = WindowBatcher(client, self._window_us)
        self._acquire = client.register_script(ACQUIRE_LUA)
        self._refresh = client.register_script(REFRESH_LUA)
        # Request-log members must be unique across every process sharing the Redis.
        self._member_prefix = os.urandom(6).hex() + ":"
        self._serial = itertools.count()
        self._live: dict[str, dict[str, RedisLease]] = {}  # key -> stream id -> lease
        self.closed = False

    async def ping(self) -> None:
        await self._client.ping()

    async def hit(self, subject: str, *, limit: int | None = None) -> Verdict:
        """Count a request of `subject` if its window has room (of `limit`, default the
        per-key limit): one check of a batch."""
        member = f"{self._member_prefix}{next(self._serial)}"
        limit = self._limit if limit is None else limit
        allowed, count, wait_us = await self._windows.check(
            f"{self._prefix}rl:{subject}", "h", limit, member
        )
        if allowed:
            return Verdict(True, limit, limit - count, wait_us / 1_000_000, None)
        # Integer ceil of µs: a retry that many seconds later finds the entry gone.
        return Verdict(False, limit, 0, wait_us / 1_000_000, max(1, -(-wait_us // 1_000_000)))

    async def peek(self, subject: str, *, limit: int) -> Verdict:
        """Whether `subject` has room in a window of `limit`, counting nothing."""
        count, wait_us, _ = await self._windows.check(f"{self._prefix}rl:{subject}", "p", limit)
        if count < limit:
            return Verdict(True, limit, limit - count, 0.0, None)
        return Verdict(False, limit, 0, wait_us / 1_000_000, max(1, -(-wait_us // 1_000_000)))

    def held(self, subject: str) -> int:
        """Leases of `subject` this process holds (and refreshes)."""
        return len(self._live.get(f"{self._prefix}streams:{subject}", ()))

    async def acquire(self, subject: str, stream_id: str) -> RedisLease:
        """Lease a stream slot for `subject`; raises TooManyStreams at the cap."""
        key = f"{self._prefix}streams:{subject}"
        acquired = await self._acquire(keys=[key], args=[self._stream_cap, self._ttl_ms, stream_id])
        if not acquired:
            raise TooManyStreams(
                f"{self._stream_cap} concurrent stream leases held",
                retry_after=self._retry_after_s,
            )
        lease = RedisLease(self, key, stream_id)
        self._live.setdefault(key, {})[stream_id] = lease
        return lease

    async def free(self, lease: RedisLease) -> None:
        """Stop refreshing `lease` and ZREM it; never raises."""
        held = self._live.get(lease.key)
        if held is not None and held.get(lease.stream_id) is lease:
            del held[lease.stream_id]
            if not held:
                del self._live[lease.key]
        if self.closed:
            return  # the client is gone; the lease lapses within the TTL
        try:
            await self._client.zrem(lease.key, lease.stream_id)
        except REDIS_ERRORS as exc:
            log.warning(
                "lease_release_failed",
                extra={"stream_id": lease.stream_id, "error": type(exc).__name__},
            )
            self._on_error(exc)

    async def refresh(self) -> int:
        """Re-score every live lease of this process to Redis time + TTL, in one pipeline.

        Returns the number of leases refreshed. Raises REDIS_ERRORS.
        """
        batch = {key: list(held.values()) for key, held in self._live.items()}
        if not batch:
            return 0
        async with self._client.pipeline(transaction=False) as pipe:
            for key, leases in batch.items():
                ids = [lease.stream_id for lease in leases]
                await self._refresh(keys=[key], args=[self._ttl_ms, *ids], client=pipe)
            await pipe.execute()
        # A release racing this refresh may have had its ZREM land before our ZADD:
        # remove those again, now that the ZADD is known to be done.
        raced = [lease for leases in batch.values() for lease in leases if lease.released]
        if raced:
            async with self._client.pipeline(transaction=False) as pipe:
                for lease in raced:
                    pipe.zrem(lease.key, lease.stream_id)
                await pipe.execute()
        return sum(len(leases) for leases in batch.values())

    async def run_refresher(self) -> None:
        """Refresh every third of the TTL until cancelled, so a live lease never lapses and
        a crashed process's leases lapse within the TTL."""
        while True:
            await asyncio.sleep(self.refresh_period_s)
            try:
                await self.refresh()
            except REDIS_ERRORS as exc:
                log.debug("lease_refresh_failed", extra={"error": type(exc).__name__})
                self._on_error(exc)
            except Exception:  # a bug must not stop refreshing: every live lease would lapse
                log.exception("lease_refresh_failed")

    def close(self) -> None:
        """Stop using Redis (the client is its owner's to close); held leases are left to
        lapse (their streams own them)."""
        self.closed = True
        self._windows.close()
