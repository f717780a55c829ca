"""A circuit breaker around the upstream: N failures within a window open it (SPEC §4).

Our own small state machine, because the usual libraries count consecutive failures or
failure rates, and the contract is "3 calls failing within 60 s open it for 30 s, then
one probe decides". A failure is a call that still failed after its retries; a call
cancelled because its client left proves nothing about the upstream and never counts.
The clock is injectable so tests can move time instead of sleeping.
"""

from __future__ import annotations

import enum
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from walletd.errors import ServiceUnavailable


class CircuitState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"  # open time is over; one probe call is allowed through


@dataclass(frozen=True, slots=True)
class CircuitSnapshot:
    """What /ready and the metrics read: no private fields needed."""

    state: CircuitState
    recent_failures: int
    retry_after_s: float  # until a call may go through; 0 when it may now


class CircuitBreaker:
    """Fails fast with ServiceUnavailable while open; lets one probe through after."""

    def __init__(
        self,
        *,
        failures: int = 3,
        window_s: float = 60.0,
        open_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = failures
        self._window_s = window_s
        self._open_s = open_s
        self._clock = clock
        self._failures: deque[float] = deque()
        self._opened_at: float | None = None
        self._probing = False
        self.listeners: list[Callable[[CircuitState], None]] = []

    @property
    def state(self) -> CircuitState:
        if self._opened_at is None:
            return CircuitState.CLOSED
        if self._clock() - self._opened_at < self._open_s:
            return CircuitState.OPEN
        return CircuitState.HALF_OPEN

    def snapshot(self) -> CircuitSnapshot:
        now = self._clock()
        self._forget_old(now)
        return CircuitSnapshot(self.state, len(self._failures), self._wait_s(now))

    @asynccontextmanager
    async def call(self) -> AsyncIterator[None]:
        """Guard one upstream call (retries included).

        Raises ServiceUnavailable (retry_after = seconds left, rounded up) without
        entering while open, or while another call is the half-open probe. An exception
        out of the block counts as a failure, except cancellation; a normal exit is a
        success and closes a half-open circuit.
        """
        self._admit()
        probe = self.state is CircuitState.HALF_OPEN
        if probe:
            self._probing = True
        try:
            yield
        except BaseException as exc:
            if probe:
                self._probing = False
            if isinstance(exc, Exception):
                self._record_failure(probe)
            raise
        else:
            if probe:
                self._probing = False
            self._record_success(probe)

    def _admit(self) -> None:
        now = self._clock()
        state = self.state
        if state is CircuitState.OPEN or (state is CircuitState.HALF_OPEN and self._probing):
            retry_after = max(1, math.ceil(self._wait_s(now)))
            raise ServiceUnavailable("upstream circuit open", retry_after=retry_after)

    def _wait_s(self, now: float) -> float:
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self._open_s - now)

    def _record_failure(self, probe: bool) -> None:
        now = self._clock()
        if probe:  # the probe failed: open again for a full period
            self._open(now)
            return
        self._failures.append(now)
        self._forget_old(now)
        if self._opened_at is None and len(self._failures) >= self._threshold:
            self._open(now)

    def _record_success(self, probe: bool) -> None:
        # Only the probe decides: a call that began before the circuit opened and
        # succeeds late says nothing about the upstream now.
        if probe:
            self._opened_at = None
            self._failures.clear()
            self._notify(CircuitState.CLOSED)

    def _open(self, now: float) -> None:
        self._opened_at = now
        self._failures.clear()
        self._notify(CircuitState.OPEN)

    def _forget_old(self, now: float) -> None:
        while self._failures and now - self._failures[0] >= self._window_s:
            self._failures.popleft()

    def _notify(self, state: CircuitState) -> None:
        for listener in self.listeners:
            listener(state)
