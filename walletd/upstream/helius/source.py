"""The Helius trade source: signature pages and enhanced-transaction batches, pipelined
(SPEC §4; the pipeline itself is upstream/pipeline.py, shared with the `rpc` upstream)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from walletd.upstream.helius.client import HeliusClient
from walletd.upstream.pipeline import SignatureSource
from walletd.upstream.source import TxPage


class HeliusSource(SignatureSource):
    """TradeSource over a HeliusClient; the client owns pacing, retries and the breaker."""

    def __init__(
        self, client: HeliusClient, *, lookahead: int = 4, max_lookahead: int = 32
    ) -> None:
        super().__init__(client, lookahead=lookahead, max_lookahead=max_lookahead)
        self._client = client

    def pages(self, wallet: str, before: str | None) -> AsyncIterator[TxPage]:
        return self._signature_pages(wallet, before)

    async def _lookup(self, signatures: list[str]) -> dict[str, dict[str, Any]]:
        wanted = set(signatures)
        found = {}
        for tx in await self._client.transactions(signatures):
            signature = tx.get("signature")
            if isinstance(signature, str) and signature in wanted:
                found[signature] = tx
        return found

    async def close(self) -> None:
        await self._client.close()
