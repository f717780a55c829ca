"""Sliding windows checked in batches: the checks of many requests in one round trip.

A Redis call costs the process far more than the script it runs (redis-py packs the
command, takes a connection from the pool, parses the reply, wakes the caller): about
170 µs of walletd's CPU per call, against a few µs of Redis's. So every window check
(a request's hit, an address's peek) joins a queue, and one task sends everything
queued in one call of WINDOWS_LUA, which runs each check exactly as a script of its own
would (the same commands, on one Redis TIME), in arrival order. Checks that arrive
while a batch is out go in the next one: under load a batch holds about one round
trip's arrivals, and alone a check waits only for the task to start.

Redis's reply is untrusted: anything but the list the script sends raises
`LimiterReplyError`, a `RedisError`, so the facade falls back to memory as for an outage.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from walletd.observability.logs import detached

# KEYS: one window log per check (scored by arrival time in µs). ARGV[1]: the window (µs);
# then three per check: "h" (count the request if there is room) or "p" (read only), the
# limit, and for "h" a member unique to the request. Returns three integers per check:
#   h: {allowed, count after this request, µs until the oldest entry leaves the window
#      (0 while there is room)}
#   p: {count in the window, µs until the oldest entry leaves it (0 while there is room), 0}
#   either: {-1, 0, 0} when Redis refused the check (a key of another type): only that
#      check fails.
# The commands (and their number formatting) are those of one script per check.
WINDOWS_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
local function hit(key, limit, member)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local count = redis.call('ZCARD', key)
  local allowed = 0
  if count < limit then
    redis.call('ZADD', key, now, member)
    redis.call('PEXPIRE', key, math.ceil(window / 1000))
    count = count + 1
    allowed = 1
  end
  local wait = 0
  if count >= limit then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    wait = tonumber(oldest[2]) + window - now
  end
  return allowed, count, wait
end
local function peek(key, limit)
  local count = redis.call('ZCOUNT', key, '(' .. (now - window), '+inf')
  local wait = 0
  if count >= limit then
    local oldest = redis.call('ZRANGEBYSCORE', key, '(' .. (now - window), '+inf',
      'WITHSCORES', 'LIMIT', 0, 1)
    wait = tonumber(oldest[2]) + window - now
  end
  return count, wait, 0
end
local out = {}
for i = 1, #KEYS do
  local at = 3 * i - 1
  local ok, a, b, c
  if ARGV[at] == 'h' then
    ok, a, b, c = pcall(hit, KEYS[i], tonumber(ARGV[at + 1]), ARGV[at + 2])
  else
    ok, a, b, c = pcall(peek, KEYS[i], tonumber(ARGV[at + 1]))
  end
  if not ok then
    a, b, c = -1, 0, 0
  end
  out[at - 1] = a
  out[at] = b
  out[at + 1] = c
end
return out
"""

# Checks per script call: bounds how long one call holds Redis and how large its reply is.
MAX_BATCH = 256

Reply = tuple[int, int, int]
# One queued check: its key, "h" or "p", the limit, the member ("" for a peek), its future.
Check = tuple[str, str, int, str, "asyncio.Future[Reply]"]


class LimiterReplyError(RedisError):
    """Redis answered a window check with something WINDOWS_LUA does not send."""


class WindowBatcher:
    """Queues window checks and sends them in batches, one batch in flight at a time."""

    def __init__(self, client: Redis, window_us: int) -> None:
        self._script = client.register_script(WINDOWS_LUA)
        self._window_us = window_us
        self._queue: list[Check] = []
        self._sender: asyncio.Task[None] | None = None
        self._closed = False

    def check(self, key: str, op: str, limit: int, member: str = "") -> asyncio.Future[Reply]:
        """Queue one check ("h" or "p" of WINDOWS_LUA); its future gets the three integers."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Reply] = loop.create_future()
        self._queue.append((key, op, limit, member, future))
        if self._closed:
            self.close()
        elif self._sender is None:
            self._sender = loop.create_task(
                self._send(), name="limits-window-batch", context=detached()
            )
        return future

    async def _send(self) -> None:
        batch: list[Check] = []
        try:
            while self._queue:
                batch = self._queue[:MAX_BATCH]
                del self._queue[:MAX_BATCH]
                await self._send_one(batch)
        except asyncio.CancelledError:  # only close() cancels it: the checks go to memory
            fail(batch, closed())
            raise
        finally:
            self._sender = None

    async def _send_one(self, batch: list[Check]) -> None:
        keys = [check[0] for check in batch]
        args: list[Any] = [self._window_us]
        for _, op, limit, member, _future in batch:
            args += (op, limit, member)
        try:
            replies = parse(await self._script(keys=keys, args=args), len(batch))
        except Exception as exc:  # every check of the batch gets it (a Redis error: memory)
            fail(batch, exc)
            return
        for check, result in zip(batch, replies, strict=True):
            future = check[4]
            if future.done():  # its request was cancelled
                continue
            if result[0] < 0:
                future.set_exception(LimiterReplyError(f"Redis refused the check of {check[0]}"))
            else:
                future.set_result(result)

    def close(self) -> None:
        """Stop sending: checks queued, in flight or made later fail with a RedisError."""
        self._closed = True
        if self._sender is not None:
            self._sender.cancel()  # a batch in flight fails in the sender
        fail(self._queue, closed())  # a sender cancelled before it started runs no code
        self._queue = []


def closed() -> RedisConnectionError:
    return RedisConnectionError("the window limiter was closed")


def fail(checks: list[Check], exc: BaseException) -> None:
    """Raise `exc` in every check still waiting."""
    for check in checks:
        if not check[4].done():
            check[4].set_exception(exc)


def parse(reply: object, checks: int) -> list[Reply]:
    """WINDOWS_LUA's reply as one triple per check; raises LimiterReplyError on anything else."""
    if type(reply) is not list or len(reply) != 3 * checks:
        raise LimiterReplyError(f"a window batch of {checks} got an unexpected reply")
    if not all(type(value) is int for value in reply):
        raise LimiterReplyError(f"a window batch of {checks} got a non-integer")
    it = iter(reply)
    return list(zip(it, it, it, strict=True))
