"""Shared, cached histories: parse and encode each page once for every stream of a wallet.

A Recording turns a source's pages into ScannedPages (trades parsed and JSON-encoded)
on demand: the reader at the frontier triggers the next fetch, every other reader of
the same wallet waits for that same fetch, and each reads at its own pace by index.
A reader that leaves never cancels a fetch others wait for (readers wait on their own
futures, woken when the fetch ends).
HistoryCache keeps recordings for CACHE_TTL after their last use, bounded by the
number of trades held (CACHE_MAX_TRADES, idle recordings only) and by HISTORY_MEMORY_MB
(SPEC §5) for every recording, cached or being read: memory is accounted as trades held
times HISTORY_BYTES_PER_TRADE, an estimate measured by bench/history_memory.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from walletd.errors import ServiceUnavailable
from walletd.trades.summary import TradeSummary
from walletd.upstream.pages import ParsedPage, ScannedPage, frame_page, parse_page
from walletd.upstream.source import TradeSource, TxPage, page_signatures

if TYPE_CHECKING:
    from walletd.stream.events import Summary

log = logging.getLogger(__name__)

# What one cached trade holds, in bytes: its frame bytes, signature, facts, offsets and
# their containers (bench/history_memory.py; bench/README.md has the measurements). An
# estimate on the high side, so the budget errs towards refusing early.
HISTORY_BYTES_PER_TRADE = 1024
OVER_BUDGET_RETRY_AFTER_S = 5  # idle histories are evicted as soon as memory is needed
# New streams are admitted below this share of HISTORY_MEMORY_MB; recordings already
# being read may grow up to all of it. The headroom lets admitted streams finish rather
# than fail mid-stream, which a client would retry at once.
ADMIT_SHARE = 0.8


class SharedStore(Protocol):
    """Where finished histories are shared between processes (shared_history.py)."""

    async def load(self, wallet: str, before: str | None) -> list[ParsedPage] | None: ...

    async def save(self, wallet: str, before: str | None, pages: Sequence[ParsedPage]) -> None: ...


class Recording:
    """One wallet's history from one cursor, fetched on demand and shared by readers."""

    def __init__(
        self,
        pages: AsyncIterator[TxPage | ParsedPage],
        wallet: str,
        now: float,
        batch_size: int,
        on_complete: Callable[[Recording], None] | None = None,
        may_grow: Callable[[], bool] | None = None,
    ) -> None:
        self._pages = pages
        self._on_complete = on_complete
        self._may_grow = may_grow
        self._wallet = wallet
        self._batch_size = batch_size
        self._batches = 0  # `trades` events framed so far, as every reader numbers them
        self._scanned: list[ScannedPage] = []
        self._seen: set[str] = set()
        self._fetch: asyncio.Task[None] | None = None
        # Readers waiting for the fetch. A set, not callbacks on the fetch task: thousands
        # of readers time out for heartbeats and leave in O(1) each, not O(readers).
        self._waiters: set[asyncio.Future[None]] = set()
        self._error: BaseException | None = None
        self.head: str | None = None  # the newest signature listed (a source's first page)
        self.done = False
        self.trade_count = 0
        self.readers = 0
        self.last_used = now
        self._summaries: dict[int, TradeSummary] = {}  # by page count, see summary_of
        self._summary_dict: Summary | None = None  # of the whole history, once done

    @property
    def failed(self) -> bool:
        return self._error is not None

    def summary_of(self, pages: int) -> TradeSummary:
        """A new summary of the trades of the first `pages` pages.

        Streams ask once, at the end, rather than merging page by page; the common
        answer (the whole history) is computed once for all of them.
        """
        summary = self._summaries.get(pages)
        if summary is None:
            summary = TradeSummary()
            for page in self._scanned[:pages]:
                summary.merge(page.summary)
            if self.done and pages == len(self._scanned):
                self._summaries[pages] = summary
        return summary.copy()

    def summary_dict(self, pages: int) -> Summary:
        """summary_of(pages).to_dict(), made once for the whole history: every stream
        that sent all of it sends the same `summary`."""
        whole = self.done and pages == len(self._scanned)
        if whole and self._summary_dict is not None:
            return self._summary_dict
        out = self.summary_of(pages).to_dict()
        if whole:
            self._summary_dict = out
        return out

    def parsed_pages(self) -> list[ParsedPage]:
        return [ParsedPage.of(page) for page in self._scanned]

    def peek(self, index: int) -> ScannedPage | None:
        """The `index`-th page if it is already scanned, without waiting."""
        return self._scanned[index] if index < len(self._scanned) else None

    def ends_before(self, index: int) -> bool:
        """Whether the history is known, without waiting, to have no `index`-th page."""
        return self.done and self._error is None and index >= len(self._scanned)

    async def page(self, index: int) -> ScannedPage | None:
        """The `index`-th scanned page, fetching it if needed; None past the end.

        Raises what the source raised. Cancelling the caller leaves the fetch running
        for the other readers.
        """
        while True:
            if index < len(self._scanned):
                return self._scanned[index]
            if self._error is not None:
                raise self._error
            if self.done:
                return None
            if self._fetch is None:
                self._fetch = asyncio.create_task(self._fetch_next(), name="history-fetch")
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.add(waiter)
            try:
                await waiter  # cancelling this reader leaves the fetch to the others
            finally:
                self._waiters.discard(waiter)

    async def _fetch_next(self) -> None:
        """Fetch and scan the next page. Any failure fails the whole recording: a page
        taken from the source but not recorded would be a silent gap for later readers."""
        try:
            if self._may_grow is not None and not self._may_grow():
                raise ServiceUnavailable(
                    "history memory budget reached", retry_after=OVER_BUDGET_RETRY_AFTER_S
                )
            page = await anext(self._pages)
            if isinstance(page, TxPage):
                if not self._scanned and self.head is None:
                    self.head = next(iter(page_signatures(page)), None)
                page = parse_page(page, self._wallet, self._seen)
            scanned = frame_page(
                page, batch_size=self._batch_size, batches=self._batches, total=self.trade_count
            )
        except StopAsyncIteration:
            self.done = True
            self._seen = set()  # only needed while pages may still come
            if self._on_complete is not None:
                self._on_complete(self)
        except asyncio.CancelledError:
            self._error = _cancelled()
            raise
        except Exception as exc:  # handed to every reader by page()
            self._error = exc
        else:
            self._scanned.append(scanned)
            self.trade_count += len(scanned)
            self._batches += len(scanned.frames)
        finally:
            self._settle()

    def _settle(self) -> None:
        """The fetch is over, however it ended: forget it and wake every reader."""
        self._fetch = None
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def close(self) -> None:
        """Cancel any fetch and stop the source; call only when no reader is left."""
        fetch = self._fetch
        if fetch is not None:
            fetch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fetch
            # A task cancelled before its first step never ran its own cleanup.
            if self._error is None:
                self._error = _cancelled()
            self._settle()
        self.done = True
        with contextlib.suppress(Exception):
            await self._pages.aclose()  # type: ignore[attr-defined]


def _cancelled() -> ServiceUnavailable:
    return ServiceUnavailable("history fetch cancelled", retry_after=1)


class HistoryCache:
    """Recordings by (wallet, cursor): live ones shared, finished ones kept for `ttl_s`."""

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
        self._background: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._recordings)

    @property
    def trade_count(self) -> int:
        """Trades held by every recording, cached or being read."""
        return sum(r.trade_count for r in self._recordings.values())

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
        self._expire()
        if self.memory_bytes >= self._memory_bytes * ADMIT_SHARE:
            raise ServiceUnavailable(
                f"history memory {self.memory_bytes} bytes of {self._memory_bytes}",
                retry_after=OVER_BUDGET_RETRY_AFTER_S,
                message="The server is overloaded; retry shortly",
            )

    def _room(self) -> bool:
        """Whether the accounted memory is under budget, once idle recordings are evicted."""
        self._expire()
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
        self._expire()
        key = (wallet, before)
        recording = self._recordings.get(key)
        if recording is None or recording.failed:
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
            del self._recordings[key]  # never serve a failure from the cache
        self._expire()

    def _record(self, wallet: str, before: str | None) -> Recording:
        """A new recording: from the shared store when it has the history, else from the
        source, stored there once complete."""
        if self._shared is None:
            source = self._source.pages(wallet, before)
            return Recording(source, wallet, self._clock(), self._batch_size, may_grow=self._room)
        shared, fetched = self._shared, False

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

        return Recording(
            pages(),
            wallet,
            self._clock(),
            self._batch_size,
            on_complete=store,
            may_grow=self._room,
        )

    def sweep(self) -> None:
        """Drop recordings unused for `ttl_s` or over the bound (run periodically too)."""
        self._expire()

    def _expire(self) -> None:
        now = self._clock()
        total = self.trade_count
        budget = self._memory_bytes
        for key, recording in list(self._recordings.items()):  # oldest use first
            if recording.readers:
                continue
            # Idle recordings also go while the whole (in use included) is at the memory
            # budget: memory is for streams first.
            if (
                total > self._max_trades
                or total * HISTORY_BYTES_PER_TRADE >= budget
                or now - recording.last_used >= self._ttl_s
            ):
                del self._recordings[key]
                total -= recording.trade_count
                self._spawn(recording.close())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Background work that close() waits for."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        recordings = list(self._recordings.values())
        self._recordings.clear()
        for recording in recordings:
            await recording.close()
        await self.settle()

    async def settle(self) -> None:
        """Wait for background work: closing expired recordings, sharing finished ones."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
