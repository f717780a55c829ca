"""What the limiters answer: a request's Verdict and a held stream slot (a Lease)."""

from __future__ import annotations

import math
from typing import NamedTuple, Protocol


class Verdict(NamedTuple):
    """One request's outcome: enough for the RateLimit-* headers and a 429.

    `reset_s` is the time until the window has room for one more request (0 while it
    has room now); `retry_after_s` is set only when refused: whole seconds, rounded up,
    so a retry exactly that much later is allowed.

    A NamedTuple, made for every counted request: as immutable as a frozen dataclass,
    at well under half its construction cost (bench/README.md, round two).
    """

    allowed: bool
    limit: int
    remaining: int
    reset_s: float
    retry_after_s: int | None


class Lease(Protocol):
    """One held stream slot, released where it was acquired."""

    async def release(self) -> None:
        """Free the slot. Idempotent; never raises (a Redis error is logged)."""
        ...

    def release_now(self) -> bool:
        """Free the slot at once when that needs no I/O (True); else False, and
        release() must be awaited. Spares an in-memory slot the task of a shield."""
        ...


def stream_retry_after(lease_ttl_s: float) -> int:
    """The Retry-After of TOO_MANY_STREAMS: the lease refresh period, in whole seconds.

    No exact time exists: a slot frees when one of the caller's own streams ends, which
    only the caller can know, or when a crashed process's lease lapses, which lease
    refreshes (every third of the TTL) decide. Polling at the refresh period notices
    either within one period without inviting a retry storm. Both backends answer the
    same, so a client sees one contract.
    """
    return max(1, math.ceil(lease_ttl_s / 3))
