"""Retries for upstream calls: exponential backoff with full jitter, honouring Retry-After,
within a bounded number of attempts and a total deadline (SPEC §4)."""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


class UpstreamFailure(Exception):
    """One failed attempt. `retryable` says whether another attempt may help (429, 5xx,
    timeouts, resets) or not (401/403: configuration); `retry_after_s` is the wait the
    upstream asked for, if it did."""

    def __init__(
        self,
        detail: str,
        *,
        retryable: bool,
        retry_after_s: float | None = None,
        status: int | None = None,
        rpc_code: int | None = None,
    ) -> None:
        super().__init__(detail)
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.status = status
        self.rpc_code = rpc_code  # a JSON-RPC error object's code


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 3  # attempts after the first
    deadline_s: float = 20.0  # no retry starts if it would end its wait past this
    base_s: float = 0.5
    cap_s: float = 8.0

    def backoff_s(self, retry: int, rng: Callable[[], float] = random.random) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**retry)) for the 0-based `retry`."""
        return rng() * min(self.cap_s, self.base_s * 2.0**retry)


RetryHook = Callable[[int, float, UpstreamFailure], None]


async def with_retries(
    attempt: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    rng: Callable[[], float] = random.random,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    on_retry: RetryHook | None = None,
) -> T:
    """Run `attempt` until it succeeds; re-raise its UpstreamFailure when it is not
    retryable, when retries are spent, or when the next wait would pass the deadline.

    The wait before retry n is max(full-jitter backoff, Retry-After). Anything other
    than UpstreamFailure (cancellation included) propagates at once.
    """
    started = clock()
    retry = 0
    while True:
        try:
            return await attempt()
        except UpstreamFailure as exc:
            if not exc.retryable or retry >= policy.max_retries:
                raise
            delay = policy.backoff_s(retry, rng)
            if exc.retry_after_s is not None:
                delay = max(delay, exc.retry_after_s)
            if clock() - started + delay > policy.deadline_s:
                raise
            retry += 1
            if on_retry is not None:
                on_retry(retry, delay, exc)
            await sleep(delay)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date.

    None when absent or unreadable; never negative. `now` is unix time (tests).
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)
