"""In-process limits: the request window and the stream cap of one process.

The request limiter is a sliding-window log: for each subject, the expiry times of its
accepted requests. A request at t is allowed iff fewer than `limit` were accepted in
(t - window, t]. Approximate sliding-window counters (two fixed buckets, weighted) let
a burst through at up to ~2x the limit or refuse early near the window edge; the log is
exact, and its memory is bounded by `limit` entries per active subject. Storing expiry
times rather than arrival times makes Retry-After exact: `ceil(expiry - now)` seconds
later the entry has expired, with no rounding of a sum in between.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

from walletd.errors import TooManyStreams
from walletd.limits.model import Verdict


class MemoryRequestLimiter:
    """`limit` requests per sliding `window_s` per subject (synchronous: no I/O)."""

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float]) -> None:
        self._limit = limit
        self._window_s = window_s
        self._clock = clock
        self._expiries: dict[str, deque[float]] = {}
        self._next_sweep = clock() + window_s
        self._untouched = Verdict(True, limit, limit, 0.0, None)  # what peek says of most

    def __len__(self) -> int:
        """Subjects currently tracked (those with a request in the window, or just past)."""
        return len(self._expiries)

    def hit(self, subject: str) -> Verdict:
        """Count a request of `subject` if the window has room; refused ones are not counted."""
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        expiries = self._expiries.get(subject)
        if expiries is None:
            expiries = self._expiries[subject] = deque()
        else:
            while expiries and expiries[0] <= now:
                expiries.popleft()
        limit = self._limit
        if len(expiries) >= limit:
            wait = expiries[0] - now
            return Verdict(False, limit, 0, wait, max(1, math.ceil(wait)))
        expiries.append(now + self._window_s)
        remaining = limit - len(expiries)
        return Verdict(True, limit, remaining, expiries[0] - now if remaining == 0 else 0.0, None)

    def peek(self, subject: str) -> Verdict:
        """Whether `subject` has room now, without counting anything."""
        expiries = self._expiries.get(subject)
        if not expiries:  # the common case (no failed authentication): nothing to build
            return self._untouched
        now = self._clock()
        live = [e for e in expiries if e > now]
        if len(live) >= self._limit:
            wait = live[0] - now
            return Verdict(False, self._limit, 0, wait, max(1, math.ceil(wait)))
        return Verdict(True, self._limit, self._limit - len(live), 0.0, None)

    def _sweep(self, now: float) -> None:
        """Forget subjects whose newest request has left the window.

        Runs at most once per window, so its cost per request stays constant, and memory
        stays bounded by the subjects active within the last two windows.
        """
        idle = [subject for subject, exp in self._expiries.items() if not exp or exp[-1] <= now]
        for subject in idle:
            del self._expiries[subject]
        self._next_sweep = now + self._window_s


class MemoryLease:
    """A slot of MemoryStreamCap; releasing twice frees it once."""

    __slots__ = ("_cap", "_released", "stream_id", "subject")

    def __init__(self, cap: MemoryStreamCap, subject: str, stream_id: str) -> None:
        self._cap = cap
        self._released = False
        self.subject = subject
        self.stream_id = stream_id

    async def release(self) -> None:
        self.release_now()

    def release_now(self) -> bool:
        if not self._released:
            self._released = True
            self._cap.free(self.subject, self.stream_id)
        return True


class MemoryStreamCap:
    """At most `cap` concurrent streams per subject in this process."""

    def __init__(self, cap: int, retry_after_s: int) -> None:
        self._cap = cap
        self._retry_after_s = retry_after_s
        self._streams: dict[str, set[str]] = {}

    def __len__(self) -> int:
        """Subjects holding at least one slot."""
        return len(self._streams)

    def held(self, subject: str) -> int:
        return len(self._streams.get(subject, ()))

    def acquire(self, subject: str, stream_id: str, *, held_elsewhere: int = 0) -> MemoryLease:
        """Take a slot for `stream_id` (unique per stream).

        `held_elsewhere` counts this process's streams of `subject` already holding a slot
        on another backend (Redis leases taken before an outage), so the process as a
        whole keeps to the cap. Raises TooManyStreams at the cap.
        """
        streams = self._streams.setdefault(subject, set())
        if stream_id not in streams and len(streams) + held_elsewhere >= self._cap:
            if not streams:
                del self._streams[subject]
            raise TooManyStreams(
                f"{self._cap} concurrent streams held", retry_after=self._retry_after_s
            )
        streams.add(stream_id)
        return MemoryLease(self, subject, stream_id)

    def free(self, subject: str, stream_id: str) -> None:
        streams = self._streams.get(subject)
        if streams is not None:
            streams.discard(stream_id)
            if not streams:
                del self._streams[subject]
