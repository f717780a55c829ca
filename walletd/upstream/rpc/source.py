"""The `rpc` trade source: a wallet's history from standard Solana JSON-RPC (SPEC §4).

Two ways, chosen by RPC_HISTORY_METHOD:
- gtfa: getTransactionsForAddress. The first page (100 full transactions) is asked for at
  once, so first trades come after one round trip. Chaining the rest by paginationToken
  would cost a round trip per page whatever the rate limit, so the rest is listed instead
  (transactionDetails "signatures", 1000 records a call, newest first), cut into pages of
  100 after the first page's last transaction, and each page asked for by the slot range
  it spans with status "succeeded", several at once (paced and capped by the client),
  yielded in order. Once gTFA has answered in this process, the first listing call goes
  right behind the first page, not after its answer: range pages start a round trip sooner
  (bench/README.md). A history of at most 100 transactions then pays for a listing it
  did not need, unless the first page answered while the listing still waited its turn.
  The second page is asked for by the first page's token as soon as that answers, while
  the listing (which range pages need) is still on its way; the listing's later pages
  are each asked for as soon as the one before answers, ahead of the range pages.
  These filters are documented by Helius (https://www.helius.dev/docs/rpc/gettransactionsforaddress)
  and QuickNode (https://www.quicknode.com/docs/solana/getTransactionsForAddress). A slot
  may hold transactions of two pages: the range answer is trimmed to the page's listed
  signatures, and one holding more than 100 continues by its token. Failed transactions
  are never downloaded after the first page but still listed (a stand-in, read as no
  trade): every upstream cuts the history into the same pages of 100 transactions, so
  `trades` events and `signatures_scanned` agree byte for byte whatever the upstream,
  and a stream resumes on any of them. A first page whose last entry has no genuine
  signature continues by the token chain instead.
- signatures: getSignaturesForAddress pages of 1000 and getTransaction batches of 100,
  pipelined as for Helius (upstream/pipeline.py); failed transactions are never fetched.
`auto` tries gtfa and, on "method not found" (-32601), uses signatures from then on in
this process. A resumed stream (`before`) always takes the signatures path: gTFA has no
`before` cursor (its paginationToken is opaque, and its signature/slot filters are not
documented alike by every provider), while getSignaturesForAddress resumes strictly after
any signature and says -32020 for one it does not know.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine, Mapping
from typing import Any

from walletd.errors import DataFetchError
from walletd.trades.solana import is_signature
from walletd.upstream.pipeline import (
    BATCH,
    Records,
    SignatureSource,
    genuine_signature,
    pipelined,
    placeholder,
)
from walletd.upstream.rpc.client import GtfaPage, RpcClient
from walletd.upstream.rpc.reader import parse_rpc_transaction, rpc_signature
from walletd.upstream.source import TxPage
from walletd.upstream.transport import METHOD_NOT_FOUND, RequestRefused

log = logging.getLogger(__name__)

HISTORY_METHODS = ("auto", "gtfa", "signatures")
# Listing pages (1000 records each) fetched ahead of the one being cut into range pages.
LISTINGS_AHEAD = 2


class RpcSource(SignatureSource):
    """TradeSource over an RpcClient; the client owns pacing, retries and the breaker.
    Live follow's poll (`newer`) lists signatures with `until` on every provider (gTFA's
    signature filters are not documented alike), then fetches with getTransaction."""

    def __init__(
        self,
        client: RpcClient,
        *,
        method: str = "auto",
        lookahead: int = 4,
        max_lookahead: int = 32,
    ) -> None:
        if method not in HISTORY_METHODS:
            raise ValueError(f"RPC_HISTORY_METHOD: one of {', '.join(HISTORY_METHODS)}")
        super().__init__(client, lookahead=lookahead, max_lookahead=max_lookahead)
        self._client = client
        self._method = method
        self.gtfa: bool | None = {"auto": None, "gtfa": True, "signatures": False}[method]
        self._gtfa_answered = False  # a first page came in this process

    def pages(self, wallet: str, before: str | None) -> AsyncIterator[TxPage]:
        if before is None and self.gtfa is not False:
            return self._gtfa_pages(wallet)
        return self._signature_pages(wallet, before)

    async def close(self) -> None:
        await self._client.close()

    # --- getTransactionsForAddress ---

    async def _gtfa_pages(self, wallet: str) -> AsyncGenerator[TxPage, None]:
        # Once gTFA has answered, the first listing call queues right behind the first
        # page (whose call takes its turn first: nothing before it suspends). Not before:
        # a provider without gTFA, or one that is down, would be asked twice a stream.
        listing = self._listing(wallet) if self._gtfa_answered else None
        try:
            data, token = await self._client.transactions_for_address(wallet, None)
        except RequestRefused as exc:
            await _cancel(listing)
            if exc.rpc_code != METHOD_NOT_FOUND or self._method != "auto":
                raise
            self.gtfa = False  # for the rest of this process
            log.warning("rpc_gtfa_unavailable", extra={"fallback": "signatures"})
            async for page in self._signature_pages(wallet, None):
                yield page
            return
        except BaseException:
            await _cancel(listing)
            raise
        self.gtfa = self._gtfa_answered = True
        second: asyncio.Task[GtfaPage] | None = None
        first = _gtfa_page(data)
        anchor = _anchor(data[-1]) if data and token is not None else None
        if anchor is None:  # the whole history, or a last entry no range can start from
            await _cancel(listing)
            listing = None
            rest = self._gtfa_chain(wallet, token if data else None)
        else:  # listed alongside, or at once while the first page is read
            if listing is None or _failed(listing):  # the early one may have been refused
                listing = self._listing(wallet)  # while the first page was the breaker's probe
            # The second page by the token, while the listing comes: range pages need it.
            second = asyncio.create_task(self._client.transactions_for_address(wallet, token))
            rest = self._gtfa_ranges(wallet, listing, anchor, second)
        try:
            await asyncio.sleep(0)  # the calls just asked for go before the first page is read
            if first is not None:
                yield first
            async for page in rest:
                yield page
        finally:
            await rest.aclose()
            await _cancel(listing)  # unless the range pages took them: never left running
            await _cancel(second)

    def _listing(self, wallet: str) -> asyncio.Task[GtfaPage]:
        """The first listing call: the whole history's records, newest first."""
        return asyncio.create_task(self._client.listing_for_address(wallet, None))

    async def _gtfa_chain(self, wallet: str, token: str | None) -> AsyncGenerator[TxPage, None]:
        """Pages after `token`, each asked for as soon as the previous one arrives."""
        ask = self._client.transactions_for_address
        following = asyncio.create_task(ask(wallet, token)) if token is not None else None
        try:
            while following is not None:
                data, token = await following
                following = None
                if token is not None and data:
                    following = asyncio.create_task(ask(wallet, token))
                if (page := _gtfa_page(data)) is not None:
                    yield page
        finally:
            await _cancel(following)

    async def _gtfa_ranges(
        self,
        wallet: str,
        listing: asyncio.Task[GtfaPage],
        anchor: str,
        second: asyncio.Task[GtfaPage],
    ) -> AsyncGenerator[TxPage, None]:
        """The pages after the first, cut from the listing, fetched by slot range in
        parallel (paced and capped by the client) and yielded in order; the second page
        from `second` (by the first page's token) as far as it holds the listed ones."""
        asked: list[asyncio.Task[GtfaPage]] = [second]

        def fetch(records: Records) -> Coroutine[Any, Any, TxPage]:
            return self._range_page(wallet, records, asked.pop() if asked else None)

        pages = pipelined(
            _listed_batches(self._client, wallet, listing, anchor),
            fetch,
            waiting_to_retry=lambda: self._client.waiting_to_retry,
            lookahead=self._lookahead,
            max_lookahead=self._max_lookahead,
        )
        try:
            async for page in pages:
                if page.transactions:
                    yield page
        finally:
            await pages.aclose()  # type: ignore[attr-defined]

    async def _range_page(
        self, wallet: str, records: Records, asked: asyncio.Task[GtfaPage] | None = None
    ) -> TxPage:
        """The page of these listed records: their succeeded transactions asked for by
        the slot range they span (a range may hold other transactions of the wallet at
        its ends, and more than a page: its token continues it), failed ones stood in for.
        What `asked` (a page already asked for) holds of them is taken from it instead:
        the range is asked only if some are missing, or if that page failed.
        """
        listed = [r for position, r in enumerate(records) if _listed(r, position)]
        wanted = {r["signature"] for r in listed if r.get("err") is None}
        found: dict[str, dict[str, Any]] = {}
        try:
            data = (await asked)[0] if asked is not None else []
        except DataFetchError:  # logged by the transport; the range may still answer
            data = []
        for tx in data:
            if (signature := rpc_signature(tx)) in wanted:
                found[str(signature)] = tx
        slots = [r["slot"] for r in listed]
        oldest, newest = min(slots, default=0), max(slots, default=0)
        token: str | None = None
        while wanted - found.keys():
            data, token = await self._client.transactions_for_address(
                wallet, token, slots=(oldest, newest)
            )
            if any(not oldest <= (_slot(tx.get("slot")) or -1) <= newest for tx in data):
                # A provider that ignored the filter would page through the whole history.
                raise DataFetchError("gtfa: a slot range answered outside its range")
            for tx in data:
                if (signature := rpc_signature(tx)) in wanted:
                    found[str(signature)] = tx
            if token is None or not data:
                break
        if missing := len(wanted - found.keys()):
            log.warning("rpc_gtfa_range_incomplete", extra={"missing": missing})
        out = [
            placeholder(r) if r.get("err") is not None else found[r["signature"]]
            for r in listed
            if r.get("err") is not None or r["signature"] in found
        ]
        return TxPage(out, listed[-1]["signature"] if listed else None, *_READ)

    # --- getSignaturesForAddress + getTransaction: SignatureSource ---

    async def _lookup(self, signatures: list[str]) -> dict[str, dict[str, Any]]:
        return await self._client.transactions(signatures)

    def _page(self, transactions: list[dict[str, Any]], cursor: str) -> TxPage:
        return TxPage(transactions, cursor, *_READ)


_READ = (parse_rpc_transaction, rpc_signature)


def _gtfa_page(data: Records) -> TxPage | None:
    """A page of full gTFA entries, those with a genuine signature; None if none has."""
    transactions = [tx for position, tx in enumerate(data) if _valid(tx, position)]
    if not transactions:
        return None
    return TxPage(transactions, str(rpc_signature(transactions[-1])), *_READ)


def _valid(tx: Mapping[str, Any], position: int) -> bool:
    """A gTFA entry is used only if its first signature is base58 of 64 bytes."""
    return genuine_signature(rpc_signature(tx), position)


def _slot(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _anchor(tx: Mapping[str, Any]) -> str | None:
    """The signature of a page's last entry, after which the listed pages start; None
    when it is not genuine."""
    signature = rpc_signature(tx)
    return signature if isinstance(signature, str) and is_signature(signature) else None


def _listed(record: Mapping[str, Any], position: int) -> bool:
    """A listed record is used only with a genuine signature and a slot."""
    if _slot(record.get("slot")) is None:
        log.warning("untrusted_slot", extra={"position": position})
        return False
    return genuine_signature(record.get("signature"), position)


async def _listed_batches(
    client: RpcClient, wallet: str, listing: asyncio.Task[GtfaPage], anchor: str
) -> AsyncGenerator[Records, None]:
    """The listed records after the anchor (the first page's last transaction), in
    batches of 100 as they come: the same pages as gTFA's own of 100, whose ends they
    are. Records up to the anchor are the first page's, or newer than it (transactions
    that landed between the two calls): skipped. The listing runs ahead on its own
    (_listing_chain)."""
    cursor: str | None = anchor
    batch: Records = []
    listed: asyncio.Queue[Records | Exception | None] = asyncio.Queue(LISTINGS_AHEAD)
    chain = asyncio.create_task(_listing_chain(client, wallet, listing, listed))
    try:
        while (records := await listed.get()) is not None:
            if isinstance(records, Exception):
                raise records
            if cursor is not None:  # still within the first page's transactions
                signatures = [r.get("signature") for r in records]
                if cursor in signatures:
                    records, cursor = records[signatures.index(cursor) + 1 :], None
                else:
                    records = []
            batch += records
            while len(batch) >= BATCH:
                yield batch[:BATCH]
                batch = batch[BATCH:]
        if batch:
            yield batch
        if cursor is not None:
            raise DataFetchError("gtfa: the listing lacks the first page's last transaction")
    finally:
        await _cancel(chain)


async def _listing_chain(
    client: RpcClient,
    wallet: str,
    listing: asyncio.Task[GtfaPage],
    out: asyncio.Queue[Records | Exception | None],
) -> None:
    """The listing's pages into `out`, each asked for as soon as the previous one
    arrives, not when its batches are reached: a call that waits out a Retry-After
    (a second) then rarely holds up the range pages, which LISTINGS_AHEAD pages of 1000
    keep busy meanwhile. Then None; or, ending it, what a call raised."""
    try:
        records, token = await listing
        await out.put(records)
        while token is not None and records:
            records, token = await client.listing_for_address(wallet, token)
            await out.put(records)
        await out.put(None)
    except Exception as exc:  # handed to the reader, which raises it
        await out.put(exc)


def _failed(task: asyncio.Task[Any]) -> bool:
    return task.done() and (task.cancelled() or task.exception() is not None)


async def _cancel(task: asyncio.Task[Any] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
