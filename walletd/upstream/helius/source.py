"""The Helius trade source: signature pages and enhanced-transaction batches, pipelined
(SPEC §4; the pipeline itself is upstream/pipeline.py, shared with the `rpc` upstream)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from walletd.upstream.helius.client import HeliusClient
from walletd.upstream.pipeline import SignatureSource, placeholder
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

    async def _fetch(self, records: Sequence[Mapping[str, Any]]) -> TxPage:
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
                out.append(placeholder(record))
            elif signature in found:
                out.append(found[signature])
        return TxPage(out, records[-1]["signature"])

    async def close(self) -> None:
        await self._client.close()
