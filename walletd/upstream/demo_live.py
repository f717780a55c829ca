"""Live trades of the demo source (SPEC §1): one swap per demo wallet every interval.

Tick `k` of a wallet lands at (k + phase) * interval on the wall clock, where the phase
in [0, 1) is a hash of the address: wallets trade at their own instants across the
interval, as real ones do, not all in the same one. A tick's signature and transaction
are pure functions of (address, k, interval), so every instance agrees on them without
talking. A history holds the ticks
of the last WINDOW_TICKS intervals, newest first, ahead of the static history, so its
newest signature says where live trades stand. A tick's signature carries k in its last
eight bytes (the rest is a hash): any tick is recognised without a table.
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
from collections.abc import Callable
from typing import Any

import base58

from walletd.upstream.demo_data import (
    _GENESIS_SLOT,
    _GENESIS_TIME,
    _swap,
    _Wallet,
    blank_transaction,
    draw_source_and_fee,
)

WINDOW_TICKS = 360  # an hour at the default DEMO_LIVE_INTERVAL of 10 s
_SLOTS_PER_SECOND = 2.5
# A tick up to this far ahead of our clock is accepted as known: another instance's
# clock may run a little ahead of ours.
_SKEW_TICKS = 1


def tick_signature(address: str, k: int, interval_s: float) -> str:
    digest = hashlib.sha512(f"live/{address}/{interval_s!r}/{k}".encode()).digest()
    return base58.b58encode(digest[:56] + k.to_bytes(8, "big")).decode()


@functools.lru_cache(maxsize=4096)
def phase(address: str) -> float:
    """Where in each interval `address`'s ticks land, in [0, 1)."""
    digest = hashlib.sha256(f"phase/{address}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def current_tick(address: str, now: float, interval_s: float) -> int:
    """The newest tick of `address` at wall-clock time `now`."""
    return math.floor(now / interval_s - phase(address))


@functools.lru_cache(maxsize=4096)
def _tick_in(address: str, signature: str, interval_s: float) -> int | None:
    """The tick whose signature `signature` is, for `address`, else None. Cached: every
    poll of a followed wallet asks it of the feed's head."""
    try:
        raw = base58.b58decode(signature)
    except ValueError:
        return None
    if len(raw) != 64:
        return None
    k = int.from_bytes(raw[56:], "big")
    return k if tick_signature(address, k, interval_s) == signature else None


class LiveTicks:
    """The live part of demo histories, on the wall clock `clock` (unix seconds)."""

    def __init__(self, interval_s: float, clock: Callable[[], float]) -> None:
        self.interval_s = float(interval_s)  # one spelling in every signature
        self._clock = clock
        # The first tick newer than every static transaction.
        self._first = math.floor(_GENESIS_TIME / interval_s) + 1

    def now(self, address: str) -> int:
        return current_tick(address, self._clock(), self.interval_s)

    def window(self, address: str) -> list[int]:
        """The ticks a history of `address` holds now, newest first."""
        now = self.now(address)
        return list(range(now, max(now - WINDOW_TICKS, self._first - 1), -1))

    def tick_of(self, address: str, signature: str) -> int | None:
        """The tick `signature` is, if it is one of `address` up to now, else None."""
        k = _tick_in(address, signature, self.interval_s)
        if k is None or not self._first <= k <= self.now(address) + _SKEW_TICKS:
            return None
        return k

    def transaction(self, wallet: _Wallet, k: int) -> dict[str, Any]:
        """Tick `k`'s transaction: always a swap, in Helius's enhanced shape."""
        rng = random.Random(hashlib.sha256(f"live/{wallet.address}/{k}".encode()).digest())
        timestamp = int((k + phase(wallet.address)) * self.interval_s)
        source, fee = draw_source_and_fee(rng)
        signature = tick_signature(wallet.address, k, self.interval_s)
        slot = _GENESIS_SLOT + int((timestamp - _GENESIS_TIME) * _SLOTS_PER_SECOND)
        tx = blank_transaction(wallet, signature, slot, timestamp, source, fee)
        _swap(tx, wallet, rng, distinct=True)
        return tx
