"""Client-side pacing of upstream calls: at most `rps` starts per second (HELIUS_RPS).

Each caller reserves the next free start time and sleeps until it, so calls start at
least 1/rps apart in the order they asked, whatever their concurrency. Spacing rather
than a burst bucket keeps us under a provider limit measured over any one second, and
MARGIN more: timer jitter on both sides otherwise brings a start in early now and then,
and one 429 costs a whole Retry-After (a second) of a pipelined stream (bench/README.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

MARGIN = 1.1


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
        self._interval = MARGIN / rps
        self._clock = clock
        self._sleep = sleep
        self._next = float("-inf")

    async def wait(self) -> None:
        """Return at this caller's start time. A cancelled wait keeps its slot used:
        cheaper than re-planning every later caller, and it only errs on the slow side."""
        now = self._clock()
        start = max(now, self._next)
        self._next = start + self._interval
        if start > now:
            await self._sleep(start - now)
