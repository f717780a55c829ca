"""Finished histories shared by every walletd process through Redis (SPEC §4, CACHE_TTL).

A process that completes a wallet's history stores its parsed trades (not the raw
transactions, which are ten times larger, and not the SSE frames, which depend on each
process's SSE_BATCH_SIZE); any process then streams that wallet without an upstream
call until the entry expires. Redis is a cache here, never a dependency: a miss, an
unreadable entry or an unreachable Redis all mean "fetch from the upstream".
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import zlib
from collections.abc import Sequence

import orjson
import redis.asyncio as redis

from walletd.ops.redis import REDIS_ERRORS
from walletd.upstream.pages import ParsedPage

log = logging.getLogger(__name__)

FORMAT = 2  # bump when the stored shape changes; other versions read as misses
_KEY_PURPOSE = b"walletd shared histories v1"
_MAC_BYTES = hashlib.sha256().digest_size


def history_key(secret_key: str) -> bytes:
    """The HMAC key of shared histories: derived from SECRET_KEY for this one purpose, so
    an entry's MAC can never be replayed as a key record's, or the other way round."""
    return hmac.digest(secret_key.encode(), _KEY_PURPOSE, "sha256")


class ForgedEntry(ValueError):
    """An entry whose MAC, wallet or cursor does not check out."""


class SharedHistories:
    """Finished histories in Redis, signed with `key` (see `history_key`)."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        key: bytes,
        prefix: str,
        ttl_s: float,
        max_trades: int,
    ) -> None:
        self._redis = client
        self._key = key
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
            return await asyncio.to_thread(_decode, blob, self._key, wallet, before)
        except ForgedEntry as exc:
            log.error("history_cache_forged", extra={"wallet": wallet, "reason": str(exc)})
            return None
        except (ValueError, TypeError, IndexError, zlib.error):
            log.warning("history_cache_unreadable", extra={"wallet": wallet})
            return None

    async def save(self, wallet: str, before: str | None, pages: Sequence[ParsedPage]) -> None:
        """Store a finished history for CACHE_TTL; best effort (failures are logged)."""
        if self._ttl_ms <= 0 or sum(len(p.signatures) for p in pages) > self._max_trades:
            return
        blob = await asyncio.to_thread(_encode, pages, self._key, wallet, before)
        try:
            await self._redis.set(self.key(wallet, before), blob, px=self._ttl_ms)
        except REDIS_ERRORS as exc:
            log.warning("history_cache_unreachable", extra={"error": type(exc).__name__})


def _encode(pages: Sequence[ParsedPage], key: bytes, wallet: str, before: str | None) -> bytes:
    """MAC, then the compressed [wallet, cursor, pages]: the MAC covers every byte after it."""
    rows = [
        [p.scanned, p.signatures, p.positions, p.facts, [o.decode() for o in p.objects]]
        for p in pages
    ]
    body = zlib.compress(orjson.dumps([wallet, before, rows]), 1)
    return hmac.digest(key, body, "sha256") + body


def _decode(blob: bytes, key: bytes, wallet: str, before: str | None) -> list[ParsedPage]:
    """The pages of a genuine entry of (wallet, before); raises ForgedEntry otherwise.

    The MAC is checked before anything is decompressed or parsed: nothing an attacker
    wrote is read (no zlib bomb, no parser input) unless it was signed with our key.
    """
    mac, body = blob[:_MAC_BYTES], blob[_MAC_BYTES:]
    if not hmac.compare_digest(mac, hmac.digest(key, body, "sha256")):
        raise ForgedEntry("bad MAC")
    owner, cursor, rows = orjson.loads(zlib.decompress(body))
    if owner != wallet or cursor != before:
        raise ForgedEntry("entry of another wallet or cursor")
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
