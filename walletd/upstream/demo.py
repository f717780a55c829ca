"""The embedded demo source: a deterministic synthetic history for every valid address.

The transactions are walletd/upstream/demo_data.py's; live trades (one per wallet every
DEMO_LIVE_INTERVAL, SPEC §1) are walletd/upstream/demo_live.py's. One address in
sixteen has no history, one in about a thousand has 20,000+ transactions (see
LARGE_DEMO_WALLET).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable

from walletd.errors import UnknownEventId
from walletd.upstream.demo_data import RENT, _transaction, _Wallet, history_size, signature_at
from walletd.upstream.demo_live import LiveTicks
from walletd.upstream.source import TxPage

# Names the tests and the fakes build on.
__all__ = ["RENT", "DemoSource", "_Wallet", "_transaction", "history_size", "signature_at"]

PAGE_SIZE = 100
# Documented in README: a wallet with 20,000+ transactions, for benchmarks.
LARGE_DEMO_WALLET = "GFmfk7ocGPRt19DuyGC6ezLtY1PtT6Zn1R53P169oSiL"
EMPTY_DEMO_WALLET = "6RPHRQhmdzVdFbdK14KSbasyKJmC42dVgDprFKqdu7si"
# Wallets kept, most recent first, while their derived signatures stay within a budget
# (a large wallet's table is a few MB): live followers of many small wallets poll each
# several times a second, and rebuilding a wallet cost most of a poll.
_WALLETS_KEPT = 1024
_SIGNATURES_KEPT = 200_000


class DemoSource:
    """TradeSource serving synthetic histories; `latency_s` simulates upstream time per page.

    With `live_interval_s` (DEMO_LIVE_INTERVAL; 0: none) every wallet with a history
    trades live: its history starts with the ticks of the recent window, on the wall
    clock `clock` (demo_live.py).
    """

    def __init__(
        self,
        latency_s: float = 0.0,
        page_size: int = PAGE_SIZE,
        *,
        live_interval_s: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._latency_s = latency_s
        self._page_size = page_size
        self._wallets: OrderedDict[str, _Wallet] = OrderedDict()
        self._live = LiveTicks(live_interval_s, clock) if live_interval_s > 0 else None

    def _wallet(self, address: str) -> _Wallet:
        wallet = self._wallets.get(address)
        if wallet is None:
            wallet = self._wallets[address] = _Wallet(address)
            kept = self._wallets
            derived = sum(len(w.signatures) for w in kept.values())
            while len(kept) > 1 and (len(kept) > _WALLETS_KEPT or derived > _SIGNATURES_KEPT):
                derived -= len(kept.popitem(last=False)[1].signatures)
        self._wallets.move_to_end(address)
        return wallet

    async def pages(self, wallet: str, before: str | None) -> AsyncIterator[TxPage]:
        history = self._wallet(wallet)
        live = self._live if history.size else None
        ticks = live.window(wallet) if live is not None else []
        start = 0
        tick = None if live is None or before is None else live.tick_of(wallet, before)
        if tick is not None:
            ticks = [k for k in ticks if k < tick]
        elif before is not None:
            position = await history.find(before)
            if position is None:
                raise UnknownEventId(f"cursor {before[:12]}... not in the history of {wallet}")
            ticks, start = [], position + 1
        for offset in range(0, len(ticks), self._page_size):
            if self._latency_s:
                await asyncio.sleep(self._latency_s)
            assert live is not None  # ticks come only with live trades
            txs = [live.transaction(history, k) for k in ticks[offset : offset + self._page_size]]
            yield TxPage(txs, txs[-1]["signature"])
        for offset in range(start, history.size, self._page_size):
            if self._latency_s:
                await asyncio.sleep(self._latency_s)
            end = min(offset + self._page_size, history.size)
            history.extend(end)
            txs = [_transaction(history, i) for i in range(offset, end)]
            yield TxPage(txs, history.signatures[end - 1])

    async def newer(self, wallet: str, since: str | None, *, verify: bool = True) -> list[TxPage]:
        """The ticks after `since`: the window's when `since` is a static transaction or
        a tick older than the window. `verify` costs no upstream here, so it is always done."""
        if since is None:
            return [page async for page in self.pages(wallet, None)]
        history = self._wallet(wallet)
        live = self._live if history.size else None
        tick = None if live is None else live.tick_of(wallet, since)
        if tick is None and await history.find(since) is None:
            raise UnknownEventId(f"cursor {since[:12]}... not in the history of {wallet}")
        if live is None:
            return []
        ticks = [k for k in live.window(wallet) if tick is None or k > tick]
        txs = [live.transaction(history, k) for k in ticks]
        return [TxPage(txs, txs[-1]["signature"])] if txs else []

    async def close(self) -> None:
        self._wallets.clear()
