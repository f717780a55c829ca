"""Shared, cached histories: parse and encode each page once for every stream of a wallet.

Each is a Recording (recording.py). HistoryCache keeps them for CACHE_TTL after their
last use, bounded by the number of trades held (CACHE_MAX_TRADES, idle recordings only)
and by HISTORY_MEMORY_MB for every recording, cached or being read: memory is accounted
as trades held times HISTORY_BYTES_PER_TRADE, an estimate measured by bench/history_memory.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any, Protocol

from walletd.errors import ServiceUnavailable
from walletd.observability.logs import detached
from walletd.upstream.pages import ParsedPage
from walletd.upstream.recording import OVER_BUDGET_RETRY_AFTER_S, HeldTrades, Recording
from walletd.upstream.source import TradeSource, TxPage

log = logging.getLogger(__name__)

# What one cached trade holds, in bytes: its frame bytes, signature, facts, offsets and
# their containers (bench/history_memory.py; bench/README.md has the measurements). An
# estimate on the high side, so the budget errs towards refusing early.
HISTORY_BYTES_PER_TRADE = 1024
# New streams are admitted below this share of HISTORY_MEMORY_MB; recordings already
# being read may grow up to all of it. The headroom lets admitted streams finish rather
# than fail mid-stream, which a client would retry at once.
ADMIT_SHARE = 0.8


class SharedStore(Protocol):
    """Where finished histories are shared between processes (shared_history.py)."""

    async def load(self, wallet: str, before: str | None) -> list[ParsedPage] | None: ...

    async def save(self, wallet: str, before: str | None, pages: Sequence[ParsedPage]) -> None: ...


class HistoryCache:
    """Recordings by (wallet, cursor): live ones shared, finished ones kept for `ttl_s`.

    What a stream's start and end cost here does not grow with the recordings held:
    the trades held are a running total, a stream's own recording is checked for its
    age, and idle recordings are evicted oldest first only while the whole is over its
    bounds. The others' ages are checked by `sweep`, which runs periodically.
    """

    def __init__(
        self,
        source: TradeSource,
        *,
        ttl_s: float,
        max_trades: int,
        memory_bytes: int = 256 * 2**20,
        batch_size: int = 100,
        clock: Callable[[], float] = time.monotonic,
        shared: SharedStore | None = None,
    ) -> None:
        self._source = source
        self._memory_bytes = memory_bytes
        self._shared = shared
        self._batch_size = batch_size
        self._ttl_s = ttl_s
        self._max_trades = max_trades
        self._clock = clock
        self._recordings: OrderedDict[tuple[str, str | None], Recording] = OrderedDict()
        self._held = HeldTrades()
        self._background: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._recordings)

    @property
    def trade_count(self) -> int:
        """Trades held by every recording, cached or being read."""
        return self._held.trades

    @property
    def memory_bytes(self) -> int:
        """The accounted memory of every recording (HISTORY_BYTES_PER_TRADE per trade)."""
        return self.trade_count * HISTORY_BYTES_PER_TRADE

    def check_budget(self, wallet: str, before: str | None) -> None:
        """Raise ServiceUnavailable if history memory is at ADMIT_SHARE of HISTORY_MEMORY_MB
        (after evicting idle recordings): a new stream would need more. A finished recording
        of the same history costs nothing more, so it is always served."""
        existing = self._recordings.get((wallet, before))
        if existing is not None and existing.done and not existing.failed:
            return
        self._evict()
        if self.memory_bytes >= self._memory_bytes * ADMIT_SHARE:
            raise ServiceUnavailable(
                f"history memory {self.memory_bytes} bytes of {self._memory_bytes}",
                retry_after=OVER_BUDGET_RETRY_AFTER_S,
                message="The server is overloaded; retry shortly",
            )

    def _room(self) -> bool:
        """Whether the accounted memory is under budget, once idle recordings are evicted."""
        self._evict()
        return self.memory_bytes < self._memory_bytes

    @contextlib.asynccontextmanager
    async def open(self, wallet: str, before: str | None) -> AsyncIterator[Recording]:
        """A recording of `wallet`'s history strictly older than `before`, held while in use."""
        recording = self.acquire(wallet, before)
        try:
            yield recording
        finally:
            self.release(recording, wallet, before)

    def acquire(self, wallet: str, before: str | None) -> Recording:
        """open()'s first half, for callers that hold a recording without a generator
        frame for as long as a stream lives (stream/overload.py): release() it after."""
        key = (wallet, before)
        recording = self._recordings.get(key)
        if recording is not None and recording.failed:
            self._forget(key, recording)
            recording = None
        elif recording is not None and self._stale(recording):
            self._drop(key, recording)
            recording = None
        self._evict()
        if recording is None:
            recording = self._record(wallet, before)
            self._recordings[key] = recording
        self._recordings.move_to_end(key)
        recording.readers += 1
        return recording

    def release(self, recording: Recording, wallet: str, before: str | None) -> None:
        recording.readers -= 1
        recording.last_used = self._clock()
        key = (wallet, before)
        if recording.failed and self._recordings.get(key) is recording:
            self._forget(key, recording)  # never serve a failure from the cache
        self._evict()

    def _record(self, wallet: str, before: str | None) -> Recording:
        """A new recording: from the shared store when it has the history, else from the
        source, stored there once complete."""
        pages: AsyncIterator[TxPage | ParsedPage]
        if self._shared is None:
            pages, store = self._source.pages(wallet, before), None
        else:
            pages, store = self._shared_pages(self._shared, wallet, before)
        return Recording(
            pages,
            wallet,
            self._clock(),
            self._batch_size,
            on_complete=store,
            may_grow=self._room,
            held=self._held,
        )

    def _shared_pages(
        self, shared: SharedStore, wallet: str, before: str | None
    ) -> tuple[AsyncIterator[TxPage | ParsedPage], Callable[[Recording], None]]:
        """The history's pages from the shared store, else from the source; and what saves
        them there once complete (only when they came from the source)."""
        fetched = False

        async def pages() -> AsyncIterator[TxPage | ParsedPage]:
            nonlocal fetched
            stored = await shared.load(wallet, before)
            if stored is not None:
                for parsed in stored:
                    yield parsed
                return
            fetched = True
            upstream = self._source.pages(wallet, before)
            try:
                async for page in upstream:
                    yield page
            finally:
                await upstream.aclose()  # type: ignore[attr-defined]

        def store(recording: Recording) -> None:
            if fetched:
                self._spawn(shared.save(wallet, before, recording.parsed_pages()))

        return pages(), store

    def sweep(self) -> None:
        """Drop recordings unused for `ttl_s` or over the bound (run periodically)."""
        self._evict(sweep=True)

    def _stale(self, recording: Recording) -> bool:
        return not recording.readers and self._clock() - recording.last_used >= self._ttl_s

    def _over_bounds(self) -> bool:
        total = self._held.trades
        return total > self._max_trades or total * HISTORY_BYTES_PER_TRADE >= self._memory_bytes

    def _evict(self, *, sweep: bool = False) -> None:
        """Drop idle recordings, oldest use first, while the whole (in use included) is
        over its bounds: memory is for streams first. A sweep also drops every one
        unused for `ttl_s`."""
        if not sweep and not self._over_bounds():
            return
        for key, recording in list(self._recordings.items()):  # oldest use first
            if recording.readers:
                continue
            if self._over_bounds() or self._stale(recording):
                self._drop(key, recording)
            elif not sweep:
                return

    def _forget(self, key: tuple[str, str | None], recording: Recording) -> None:
        """No longer hold `recording` (its readers keep what they hold)."""
        del self._recordings[key]
        self._held.trades -= recording.trade_count

    def _drop(self, key: tuple[str, str | None], recording: Recording) -> None:
        """Forget an idle `recording` and close it."""
        self._forget(key, recording)
        self._spawn(recording.close())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Background work that close() waits for."""
        task = asyncio.get_running_loop().create_task(work, context=detached())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        recordings = list(self._recordings.values())
        self._recordings.clear()
        self._held.trades = 0
        for recording in recordings:
            await recording.close()
        await self.settle()

    async def settle(self) -> None:
        """Wait for background work: closing expired recordings, sharing finished ones."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
