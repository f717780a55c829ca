"""Pipelined history fetching, shared by the upstreams that list signatures first (SPEC §4).

Signatures are listed a page (1000) at a time, each page after the previous one's
cursor, and cut into batches of 100 whose transactions are fetched concurrently (up to
`lookahead` batches in flight). Batches are yielded strictly in signature order, newest
first, as soon as the oldest outstanding one arrives: the first trades go out long
before the whole history is listed, and memory stays bounded by the batches in flight.

While a call waits out a Retry-After or a backoff, the window widens to `max_lookahead`:
later batches keep coming at the paced rate instead of the whole pipeline idling for a
second behind the oldest one (a 429 then costs almost nothing, bench/README.md).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from walletd.trades.solana import is_signature
from walletd.upstream.source import TxPage

log = logging.getLogger(__name__)

SIGNATURES_PAGE = 1000  # getSignaturesForAddress maximum
BATCH = 100  # signatures per page of transactions

_RETRY_POLL_S = 0.05  # how soon a waiting pipeline notices a call sleeping to retry

B = TypeVar("B")
Records = list[dict[str, Any]]
ListPage = Callable[[str, str | None, int], Coroutine[Any, Any, Records]]


class ListNewer(Protocol):
    """getSignaturesForAddress with `until` too: `(wallet, before, limit, until=...)`."""

    def __call__(
        self, address: str, before: str | None, limit: int = ..., *, until: str | None = None
    ) -> Coroutine[Any, Any, Records]: ...


def signature_params(address: str, before: str | None, until: str | None, limit: int) -> list[Any]:
    """The params of a getSignaturesForAddress call: newest first, strictly older than
    `before` and strictly newer than `until`, at most a page."""
    options: dict[str, Any] = {"limit": min(limit, SIGNATURES_PAGE)}
    if before is not None:
        options["before"] = before
    if until is not None:
        options["until"] = until
    return [address, options]


async def pipelined(
    batches: AsyncGenerator[B, None],
    fetch: Callable[[B], Coroutine[Any, Any, TxPage]],
    *,
    waiting_to_retry: Callable[[], int],
    lookahead: int = 4,
    max_lookahead: int = 32,
) -> AsyncIterator[TxPage]:
    """`fetch(batch)` for every batch, up to `lookahead` at once (`max_lookahead` while
    `waiting_to_retry()` is non-zero), yielded in batch order. Closing the iterator
    cancels the fetches in flight and closes `batches`."""
    max_lookahead = max(lookahead, max_lookahead)
    pending: deque[asyncio.Task[TxPage]] = deque()
    try:
        exhausted = False

        async def extend() -> None:
            nonlocal exhausted
            batch = await anext(batches, None)
            if batch is None:
                exhausted = True
            else:
                pending.append(asyncio.create_task(fetch(batch)))

        while True:
            while not exhausted and len(pending) < lookahead:
                await extend()
            if not pending:
                return
            task = pending[0]
            while not task.done():
                if waiting_to_retry() and not exhausted and len(pending) < max_lookahead:
                    await extend()
                else:
                    await asyncio.wait({task}, timeout=_RETRY_POLL_S)
            pending.popleft()
            yield task.result()
    finally:
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(BaseException):
                await task
        await batches.aclose()


async def signature_batches(
    list_page: ListPage, wallet: str, before: str | None
) -> AsyncGenerator[Records, None]:
    """Signature records in batches of 100, newest first, paging with `before` through
    `list_page(wallet, before, limit)` (getSignaturesForAddress).

    The next page is asked for as soon as a full page's first batch is taken, so the
    transaction batches never wait on a page boundary, and that batch's fetch (the first
    trades, for the first page) queues for the rate limit ahead of the listing, which
    ten batches need later. A record whose signature is not base58 of 64 bytes is
    skipped and logged (upstream data is untrusted, SPEC §4).
    """
    page: asyncio.Task[Records] | None = asyncio.create_task(
        list_page(wallet, before, SIGNATURES_PAGE)
    )
    try:
        while page is not None:
            listed = await page
            records = [r for position, r in enumerate(listed) if _valid(r, position)]
            page = None
            for start in range(0, len(records), BATCH):
                yield records[start : start + BATCH]
                if start == 0 and len(listed) == SIGNATURES_PAGE:  # resumed for batch 2
                    cursor = records[-1]["signature"]
                    page = asyncio.create_task(list_page(wallet, cursor, SIGNATURES_PAGE))
    finally:
        if page is not None:
            page.cancel()
            with contextlib.suppress(BaseException):
                await page


def _valid(record: dict[str, Any], position: int) -> bool:
    signature = record.get("signature") if isinstance(record, Mapping) else None
    return genuine_signature(signature, position)


def genuine_signature(signature: object, position: int) -> bool:
    """True when an upstream signature is base58 of 64 bytes (SPEC §4): it becomes an SSE
    `id:` line and a cursor. Anything else is logged escaped (ascii), never raw."""
    if isinstance(signature, str) and is_signature(signature):
        return True
    log.warning(
        "untrusted_signature", extra={"position": position, "value": ascii(signature)[:100]}
    )
    return False


def placeholder(record: Mapping[str, Any]) -> dict[str, Any]:
    """A failed transaction's stand-in: never fetched (never a trade), still listed, so it
    counts as examined and pages keep the same boundaries on every upstream."""
    return {"signature": record["signature"], "transactionError": record["err"]}


async def newer_pages(
    list_page: ListNewer,
    fetch: Callable[[Records], Coroutine[Any, Any, TxPage]],
    wallet: str,
    since: str | None,
    verify: bool,
) -> list[TxPage]:
    """Live follow's poll (TradeSource.newer): the signatures newer than `since`, listed
    with `until=since` (paging with `before` while pages come full), then fetched in
    batches, newest first.

    `until` is silent about a signature it does not know (the listing runs on to the
    oldest), so `verify` asks for one record `before=since` alongside: the node's "not
    found" (-32020) becomes InvalidEventId.
    """
    check = None
    if verify and since is not None:
        check = asyncio.create_task(list_page(wallet, since, 1))
    try:
        records: Records = []
        before = None
        while True:
            listed = await list_page(wallet, before, SIGNATURES_PAGE, until=since)
            page = [r for position, r in enumerate(listed) if _valid(r, position)]
            records += page
            if len(listed) < SIGNATURES_PAGE or not page:
                break
            before = page[-1]["signature"]
        if check is not None:
            await check
    finally:
        if check is not None and not check.done():
            check.cancel()
            with contextlib.suppress(BaseException):
                await check
    batches = [records[start : start + BATCH] for start in range(0, len(records), BATCH)]
    return list(await asyncio.gather(*(fetch(batch) for batch in batches)))


class SignatureLister(Protocol):
    """What a SignatureSource needs of its client."""

    @property
    def waiting_to_retry(self) -> int: ...

    def signatures(
        self, address: str, before: str | None, limit: int = ..., *, until: str | None = None
    ) -> Coroutine[Any, Any, Records]: ...


class SignatureSource(abc.ABC):
    """A source that lists signatures (getSignaturesForAddress) and fetches their
    transactions by batch (`_fetch`, the adapter's): history pages pipelined, and live
    follow's poll, the same way for every adapter."""

    def __init__(self, client: SignatureLister, *, lookahead: int, max_lookahead: int) -> None:
        self._lister = client
        self._lookahead = lookahead
        self._max_lookahead = max(lookahead, max_lookahead)

    def _signature_pages(self, wallet: str, before: str | None) -> AsyncIterator[TxPage]:
        return pipelined(
            signature_batches(self._lister.signatures, wallet, before),
            self._fetch,
            waiting_to_retry=lambda: self._lister.waiting_to_retry,
            lookahead=self._lookahead,
            max_lookahead=self._max_lookahead,
        )

    async def newer(self, wallet: str, since: str | None, *, verify: bool = True) -> list[TxPage]:
        return await newer_pages(self._lister.signatures, self._fetch, wallet, since, verify)

    async def _fetch(self, records: Sequence[Mapping[str, Any]]) -> TxPage:
        """The batch's transactions in signature order. Failed ones are not fetched (they
        are never trades) but still listed, so they count as examined; ones the upstream
        leaves out are asked for once more, then dropped."""
        wanted = [r["signature"] for r in records if r.get("err") is None]
        found: dict[str, dict[str, Any]] = {}
        for _ in range(2):
            missing = [sig for sig in wanted if sig not in found]
            if not missing:
                break
            found.update(await self._lookup(missing))
        out: list[dict[str, Any]] = []
        for record in records:
            if record.get("err") is not None:
                out.append(placeholder(record))
            elif (tx := found.get(record["signature"])) is not None:
                out.append(tx)
        return self._page(out, records[-1]["signature"])

    @abc.abstractmethod
    async def _lookup(self, signatures: list[str]) -> dict[str, dict[str, Any]]:
        """The adapter's transactions of these signatures, by signature (absent: not found)."""

    def _page(self, transactions: list[dict[str, Any]], cursor: str) -> TxPage:
        """A page of the adapter's transactions, read by its reader."""
        return TxPage(transactions, cursor)
