"""Small fakes at our own seams: a list-backed TradeSource with gates and failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from walletd.errors import InvalidEventId
from walletd.upstream.demo import DemoSource
from walletd.upstream.source import TxPage


async def demo_pages(wallet: str, page_size: int = 100) -> list[TxPage]:
    """The demo history of `wallet`, as pages."""
    return [page async for page in DemoSource(page_size=page_size).pages(wallet, None)]


class ListSource:
    """Serves fixed pages. `gates[i]` (if set) must open before page i is served;
    `fail_at[i]` is raised instead of serving page i."""

    def __init__(
        self,
        pages: Sequence[Sequence[Mapping[str, Any]]],
        *,
        gates: Mapping[int, asyncio.Event] | None = None,
        fail_at: Mapping[int, BaseException] | None = None,
    ) -> None:
        self._pages = [list(p) for p in pages]
        self.gates = dict(gates or {})
        self.fail_at = dict(fail_at or {})
        self.calls: list[tuple[str, str | None]] = []
        self.served = 0
        self.waiting = asyncio.Event()  # set while a fetch waits on a gate
        self.closed = False

    @classmethod
    def from_pages(cls, pages: Sequence[TxPage], **kwargs: Any) -> ListSource:
        return cls([p.transactions for p in pages], **kwargs)

    async def pages(self, wallet: str, before: str | None) -> AsyncIterator[TxPage]:
        self.calls.append((wallet, before))
        flat = [(i, tx) for i, page in enumerate(self._pages) for tx in page]
        start = 0
        if before is not None:
            sigs = [tx.get("signature") for _, tx in flat]
            if before not in sigs:
                raise InvalidEventId("unknown cursor")
            start = sigs.index(before) + 1
        for index in range(len(self._pages)):
            txs = [tx for i, tx in flat[start:] if i == index]
            if not txs:
                continue
            gate = self.gates.get(index)
            if gate is not None:
                self.waiting.set()
                await gate.wait()
                self.waiting.clear()
            if index in self.fail_at:
                raise self.fail_at[index]
            self.served += 1
            yield TxPage(txs, txs[-1].get("signature"))

    async def newer(self, wallet: str, since: str | None, *, verify: bool = True) -> list[TxPage]:
        """A fixed history never grows: nothing is newer than any of its signatures."""
        return []

    async def close(self) -> None:
        self.closed = True
