"""The Helius trade source: signature pages and transaction batches, pipelined (SPEC §4).

Signatures are listed a page (1000) at a time, each page after the previous one's
cursor, and cut into batches of 100 whose enhanced transactions are fetched
concurrently (up to `lookahead` batches in flight). Batches are yielded strictly in
signature order, newest first, as soon as the oldest outstanding one arrives: the first
trades go out long before the whole history is listed, and memory stays bounded by the
batches in flight.

While a call waits out a Retry-After or a backoff, the window widens to `max_lookahead`:
later batches keep coming at the paced rate instead of the whole pipeline idling for a
second behind the oldest one (a 429 then costs almost nothing, bench/README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any

from walletd.upstream.helius.client import SIGNATURES_PAGE, TRANSACTIONS_BATCH, HeliusClient
from walletd.upstream.source import TxPage

_RETRY_POLL_S = 0.05  # how soon a waiting pipeline notices a call sleeping to retry


class HeliusSource:
    """TradeSource over a HeliusClient; the client owns pacing, retries and the breaker."""

    def __init__(
        self, client: HeliusClient, *, lookahead: int = 4, max_lookahead: int = 32
    ) -> None:
        self._client = client
        self._lookahead = lookahead
        self._max_lookahead = max(lookahead, max_lookahead)

    async def pages(self, wallet: str, before: str | None) -> AsyncIterator[TxPage]:
        batches = _signature_batches(self._client, wallet, before)
        pending: deque[tuple[list[dict[str, Any]], asyncio.Task[list[dict[str, Any]]]]] = deque()
        try:
            exhausted = False

            async def extend() -> None:
                nonlocal exhausted
                records = await anext(batches, None)
                if records is None:
                    exhausted = True
                else:
                    pending.append((records, asyncio.create_task(self._fetch(records))))

            while True:
                while not exhausted and len(pending) < self._lookahead:
                    await extend()
                if not pending:
                    return
                records, task = pending[0]
                while not task.done():
                    if (
                        self._client.waiting_to_retry
                        and not exhausted
                        and len(pending) < self._max_lookahead
                    ):
                        await extend()
                    else:
                        await asyncio.wait({task}, timeout=_RETRY_POLL_S)
                pending.popleft()
                yield TxPage(task.result(), records[-1]["signature"])
        finally:
            for _, task in pending:
                task.cancel()
            for _, task in pending:
                with contextlib.suppress(BaseException):
                    await task
            await batches.aclose()

    async def newer(self, wallet: str, since: str | None, *, verify: bool = True) -> list[TxPage]:
        """Everything newer than `since`: signatures listed with `until=since` (paging
        with `before` while pages come full), then their enhanced transactions.

        `until` is silent about a signature it does not know (the listing just runs on
        to the oldest), so `verify` asks for one record `before=since` alongside: the
        node's "not found" (-32020) becomes InvalidEventId.
        """
        check = None
        if verify and since is not None:
            check = asyncio.create_task(self._client.signatures(wallet, since, 1))
        try:
            records: list[dict[str, Any]] = []
            before = None
            while True:
                listed = await self._client.signatures(wallet, before, until=since)
                page = [r for r in listed if isinstance(r.get("signature"), str)]
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
        batches = [
            records[start : start + TRANSACTIONS_BATCH]
            for start in range(0, len(records), TRANSACTIONS_BATCH)
        ]
        found = await asyncio.gather(*(self._fetch(batch) for batch in batches))
        return [
            TxPage(txs, batch[-1]["signature"]) for txs, batch in zip(found, batches, strict=True)
        ]

    async def _fetch(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The batch's transactions in signature order. Failed ones are not fetched (they
        are never trades) but still listed, so they count as examined; signatures the
        API leaves out of a short batch are asked for once more, then dropped."""
        wanted = [r["signature"] for r in records if r.get("err") is None]
        found: dict[str, dict[str, Any]] = {}
        for _ in range(2):
            missing = [sig for sig in wanted if sig not in found]
            if not missing:
                break
            for tx in await self._client.transactions(missing):
                signature = tx.get("signature")
                if isinstance(signature, str) and signature in missing:
                    found[signature] = tx
        out: list[dict[str, Any]] = []
        for record in records:
            signature = record["signature"]
            if record.get("err") is not None:
                out.append({"signature": signature, "transactionError": record["err"]})
            elif signature in found:
                out.append(found[signature])
        return out

    async def close(self) -> None:
        await self._client.close()


async def _signature_batches(
    client: HeliusClient, wallet: str, before: str | None
) -> AsyncGenerator[list[dict[str, Any]], None]:
    """Signature records in batches of 100, newest first, paging with `before`.

    The next page is asked for as soon as a full page arrives, so the transaction
    batches never wait on a page boundary.
    """
    page: asyncio.Task[list[dict[str, Any]]] | None = asyncio.create_task(
        client.signatures(wallet, before, SIGNATURES_PAGE)
    )
    try:
        while page is not None:
            records = [r for r in await page if isinstance(r.get("signature"), str)]
            page = None
            if len(records) == SIGNATURES_PAGE:
                cursor = records[-1]["signature"]
                page = asyncio.create_task(client.signatures(wallet, cursor, SIGNATURES_PAGE))
            for start in range(0, len(records), TRANSACTIONS_BATCH):
                yield records[start : start + TRANSACTIONS_BATCH]
    finally:
        if page is not None:
            page.cancel()
            with contextlib.suppress(BaseException):
                await page
