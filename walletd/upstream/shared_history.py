"""Finished histories shared by every walletd process through Redis (SPEC §4, CACHE_TTL).

A process that completes a wallet's history stores its parsed trades (not the raw
transactions, which are ten times larger, and not the SSE frames, which depend on each
process's SSE_BATCH_SIZE); any process then streams that wallet without an upstream
call until the entry expires. Redis is a cache here, never a dependency: a miss, an
unreadable entry or an unreachable Redis all mean "fetch from the upstream".
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio as redis

from walletd.ops.redis import REDIS_ERRORS
from walletd.upstream.history import ParsedPage

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the stored shape changes; other versions read as misses


class SharedHistories:
    def __init__(self, client: redis.Redis, *, prefix: str, ttl_s: float, max_trades: int) -> None:
        self._redis = client
        self._prefix = prefix
        self._ttl_ms = int(ttl_s * 1000)
        self._max_trades = max_trades

    def key(self, wallet: str, before: str | None) -> str:
        return f"{self._prefix}history:{FORMAT}:{wallet}:{before or '-'}"

    async def load(self, wallet: str, before: str | None) -> list[ParsedPage] | None:
        """The stored history, or None (a miss, or Redis unable to say)."""
        try:
            blob = await self._redis.get(self.key(wallet, before))
        except REDIS_ERRORS as exc:
            log.warning("history_cache_unreachable", extra={"error": type(exc).__name__})
            return None
        if not isinstance(blob, bytes):
            return None
        try:
            return await asyncio.to_thread(_decode, blob)
        except (ValueError, TypeError, IndexError, zlib.error):
            log.warning("history_cache_unreadable", extra={"wallet": wallet})
            return None

    async def save(self, wallet: str, before: str | None, pages: Sequence[ParsedPage]) -> None:
        """Store a finished history for CACHE_TTL; best effort (failures are logged)."""
        if self._ttl_ms <= 0 or sum(len(p.signatures) for p in pages) > self._max_trades:
            return
        blob = await asyncio.to_thread(_encode, pages)
        try:
            await self._redis.set(self.key(wallet, before), blob, px=self._ttl_ms)
        except REDIS_ERRORS as exc:
            log.warning("history_cache_unreachable", extra={"error": type(exc).__name__})


def _encode(pages: Sequence[ParsedPage]) -> bytes:
    rows = [
        [p.scanned, p.signatures, p.positions, p.facts, [o.decode() for o in p.objects]]
        for p in pages
    ]
    return zlib.compress(orjson.dumps(rows), 1)


def _decode(blob: bytes) -> list[ParsedPage]:
    rows: Any = orjson.loads(zlib.decompress(blob))
    pages = []
    for scanned, signatures, positions, facts, objects in rows:
        if not (len(signatures) == len(positions) == len(facts) == len(objects)):
            raise ValueError("inconsistent page")
        pages.append(
            ParsedPage(
                int(scanned),
                tuple(signatures),
                tuple(positions),
                tuple(tuple(f) for f in facts),
                tuple(o.encode() for o in objects),
            )
        )
    return pages
