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
request was really sent: measured when it wakes, not when it asked (after an event-loop
stall, sleepers that all overslept would otherwise start back to back), and, with
turn(), when its first bytes went to the socket. Between a caller's wake and its send
the event loop may run other tasks (parsing a 100-transaction answer takes milliseconds):
a send that slips while the next one does not arrives early where the provider measures
(seen on loopback with tcpdump: 13-18 ms between sends paced 22 ms apart). So the next
turn waits for the previous send, or HOLD_MAX_S at most (a connect that hangs must not
stall every call of the endpoint). (Waking early by the usual turn-to-send time, so
the send lands on the paced time, was tried: it bought nothing measurable and spent
half of MARGIN's 2 ms at 50 RPS, which a strict provider then refused.) Spacing rather
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
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

MARGIN = 1.1
MAX_SLOWDOWN = 16.0
RECOVERY_CALLS = 32
HOLD_MAX_S = 0.5  # the longest a turn waits for the previous request to be sent


class Turn:
    """One request's turn: `started` when it woke; sent() hands the turn on."""

    __slots__ = ("_pacer", "_release", "started")

    def __init__(self, pacer: Pacer, started: float) -> None:
        self._pacer = pacer
        self.started = started
        self._release: asyncio.TimerHandle | None = None

    def sent(self) -> None:
        """The request's first bytes are on the wire, or HOLD_MAX_S passed, or the
        request ended first (idempotent): the next turn's spacing counts from now."""
        self._pacer._hand_on(self)


class Pacer:
    def __init__(
        self,
        rps: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        hold_max_s: float = HOLD_MAX_S,
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
        self._holder: Turn | None = None  # the turn whose request is not yet sent
        self._hold_max_s = hold_max_s

    @property
    def rate(self) -> float:
        """Starts per second allowed now (MARGIN and any slow-down applied)."""
        return self._rate

    @contextlib.asynccontextmanager
    async def turn(self, calls: int = 1) -> AsyncIterator[Turn]:
        """Wait for the turn of a request carrying `calls` calls. The next turn comes
        `calls` intervals after this request's Turn.sent(), or after HOLD_MAX_S or the
        block's end, whichever is first. A cancelled wait gives its turn away."""
        await self._turn.acquire()
        try:
            delay = self._last + self._last_calls / self._rate - self._clock()
            if delay > 0:
                await self._sleep(delay)
        except BaseException:
            self._turn.release()
            raise
        turn = self._holder = Turn(self, self._clock())
        self._last, self._last_calls = turn.started, max(1, calls)
        turn._release = asyncio.get_running_loop().call_later(self._hold_max_s, turn.sent)
        try:
            yield turn
        finally:
            turn.sent()

    def _hand_on(self, turn: Turn) -> None:
        """Once per turn: the next turn's spacing counts from now."""
        if self._holder is not turn:
            return
        self._holder = None
        now = self._clock()
        self._last = max(self._last, now)
        if turn._release is not None:
            turn._release.cancel()
        self._turn.release()

    async def wait(self, calls: int = 1) -> float:
        """The start time (the clock's) of a request carrying `calls` calls, sent at once."""
        async with self.turn(calls) as turn:
            return turn.started

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
