"""A wallet's history from one cursor, recorded once for every stream that reads it.

A Recording turns a source's pages into ScannedPages (trades parsed and JSON-encoded)
on demand: the reader at the frontier triggers the next fetch, every other reader of
the same wallet waits for that same fetch, and each reads at its own pace by index.
A reader that leaves never cancels a fetch others wait for (readers wait on their own
futures, woken when the fetch ends). HistoryCache (history.py) keeps them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from walletd.errors import ServiceUnavailable
from walletd.trades.summary import TradeSummary
from walletd.upstream.pages import ParsedPage, ScannedPage, frame_page, parse_page
from walletd.upstream.source import TxPage, page_signatures

if TYPE_CHECKING:
    from walletd.stream.events import Summary

OVER_BUDGET_RETRY_AFTER_S = 5  # idle histories are evicted as soon as memory is needed


class HeldTrades:
    """The trades of every recording a cache holds, kept up to date as pages arrive:
    summing them on each stream's start and end cost O(recordings)."""

    __slots__ = ("trades",)

    def __init__(self) -> None:
        self.trades = 0


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
        held: HeldTrades | None = None,
    ) -> None:
        self._pages = pages
        self._held = held or HeldTrades()  # its cache's total, else one of its own
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

    def scanned_from(self, index: int) -> list[ScannedPage]:
        """The pages from the `index`-th on that are scanned by now, without waiting (a
        stream of a cached history takes them all in one step)."""
        return self._scanned[index:]

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
            self._held.trades += len(scanned)
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
