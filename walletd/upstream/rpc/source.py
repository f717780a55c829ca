"""The `rpc` trade source: a wallet's history from standard Solana JSON-RPC (SPEC §4).

Two ways, chosen by RPC_HISTORY_METHOD:
- gtfa: getTransactionsForAddress pages of 100 full transactions, chained by their
  paginationToken (each page needs the previous one's token, so the next page is asked
  for as soon as a page arrives, while walletd parses it). Failed transactions stay in
  the pages and are read as no trade: every upstream then cuts the history into the same
  pages of 100 transactions, so `trades` events and `signatures_scanned` agree byte for
  byte whatever the upstream, and a stream resumes on any of them.
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
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

from walletd.upstream.pipeline import SignatureSource, genuine_signature
from walletd.upstream.rpc.client import RpcClient
from walletd.upstream.rpc.reader import parse_rpc_transaction, rpc_signature
from walletd.upstream.source import TxPage
from walletd.upstream.transport import METHOD_NOT_FOUND, RequestRefused

log = logging.getLogger(__name__)

HISTORY_METHODS = ("auto", "gtfa", "signatures")
Page = tuple[list[dict[str, Any]], str | None]


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

    def pages(self, wallet: str, before: str | None) -> AsyncIterator[TxPage]:
        if before is None and self.gtfa is not False:
            return self._gtfa_pages(wallet)
        return self._signature_pages(wallet, before)

    async def close(self) -> None:
        await self._client.close()

    # --- getTransactionsForAddress ---

    async def _gtfa_pages(self, wallet: str) -> AsyncGenerator[TxPage, None]:
        cursor: str | None = None
        ask = self._client.transactions_for_address
        following: asyncio.Task[Page] | None = asyncio.create_task(ask(wallet, None))
        try:
            while following is not None:
                try:
                    data, token = await following
                except RequestRefused as exc:
                    following = None
                    if exc.rpc_code != METHOD_NOT_FOUND or self._method != "auto":
                        raise
                    self.gtfa = False  # for the rest of this process
                    log.warning("rpc_gtfa_unavailable", extra={"fallback": "signatures"})
                    async for page in self._signature_pages(wallet, cursor):
                        yield page
                    return
                self.gtfa = True
                following = None
                if token is not None and data:
                    following = asyncio.create_task(ask(wallet, token))
                transactions = [tx for n, tx in enumerate(data) if _valid(tx, n)]
                if transactions:
                    cursor = _signature(transactions[-1])
                    yield TxPage(transactions, cursor, parse_rpc_transaction, rpc_signature)
        finally:
            if following is not None:
                following.cancel()
                with contextlib.suppress(BaseException):
                    await following

    # --- getSignaturesForAddress + getTransaction: SignatureSource ---

    async def _lookup(self, signatures: list[str]) -> dict[str, dict[str, Any]]:
        return await self._client.transactions(signatures)

    def _page(self, transactions: list[dict[str, Any]], cursor: str) -> TxPage:
        return TxPage(transactions, cursor, parse_rpc_transaction, rpc_signature)


def _signature(tx: Mapping[str, Any]) -> str:
    return str(tx["transaction"]["signatures"][0])


def _valid(tx: Mapping[str, Any], position: int) -> bool:
    """A gTFA entry is used only if its first signature is base58 of 64 bytes."""
    try:
        signature = tx["transaction"]["signatures"][0]
    except (KeyError, IndexError, TypeError):
        signature = None
    return genuine_signature(signature, position)
