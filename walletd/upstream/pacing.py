"""Client-side pacing of upstream calls: at most `rps` calls per second (UPSTREAM_RPS).

A request that carries N calls (a JSON-RPC batch) is charged N: providers meter every
call of a batch against the rate limit. QuickNode: "when you batch requests, each request
within the batch is individually counted towards your API Credits per second"
(https://support.quicknode.com/hc/en-us/articles/20633265909521-Error-credits-limited-to-X-sec);
Helius counts "each individual request within the batch" in its request totals
(https://www.helius.dev/docs/faqs/accounts); Alchemy meters throughput in compute units
per second, summed over every request (https://www.alchemy.com/docs/reference/compute-units).
A batch goes out whole and reserves N intervals: the next start waits N/rate. Helius
documents getTransaction batches of up to 100 on every plan, 10 RPS ones included
(https://www.helius.dev/docs/billing/rate-limits), so a batch may outweigh one second's
budget; what it may not do is be followed early.

Callers take turns; each starts at least the previous request's intervals after that
request really started, measured when it wakes, not when it asked: after an event-loop
stall, sleepers that all overslept would otherwise start back to back. Spacing rather
than a burst bucket keeps us under a provider limit measured over any one second, and
MARGIN more: timer and network jitter otherwise bring a start in early now and then, and
one 429 costs a whole Retry-After (a second) of a pipelined stream (bench/README.md).

The rate adapts (AIMD): a 429 says our spacing was still not enough where the provider
measures it, so slow_down() halves the rate (never below 1/MAX_SLOWDOWN of it), and each
call that succeeds adds back 1/RECOVERY_CALLS of the configured rate. Refusals of calls
that started before the last slow-down were paced at the old rate and say nothing new:
they do not halve it again. A short cautious stretch costs far less than the Retry-After
that another 429 would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

MARGIN = 1.1
MAX_SLOWDOWN = 16.0
RECOVERY_CALLS = 32


class Pacer:
    def __init__(
        self,
        rps: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rps <= 0:
            raise ValueError("rps must be positive")
        self._full_rate = rps / MARGIN
        self._rate = self._full_rate
        self._clock = clock
        self._sleep = sleep
        self._last = float("-inf")
        self._last_calls = 1  # what the last request started was charged
        self._slowed_at = float("-inf")
        self._turn = asyncio.Lock()  # FIFO: callers start in the order they asked

    @property
    def rate(self) -> float:
        """Starts per second allowed now (MARGIN and any slow-down applied)."""
        return self._rate

    async def wait(self, calls: int = 1) -> float:
        """Return at the start time (the clock's) of a request carrying `calls` calls. A
        cancelled wait gives its turn away."""
        async with self._turn:
            delay = self._last + self._last_calls / self._rate - self._clock()
            if delay > 0:
                await self._sleep(delay)
            self._last, self._last_calls = self._clock(), max(1, calls)
            return self._last

    def slow_down(self, started: float) -> None:
        """The provider refused the call that started at `started` as too fast: halve
        the rate (multiplicative), once per slow-down."""
        if started <= self._slowed_at:
            return
        self._slowed_at = self._clock()
        self._rate = max(self._full_rate / MAX_SLOWDOWN, self._rate / 2)

    def succeeded(self) -> None:
        """A call went through: win back a little of the rate (additive)."""
        self._rate = min(self._full_rate, self._rate + self._full_rate / RECOVERY_CALLS)
