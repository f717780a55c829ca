"""Live batches as Redis pub/sub messages (SPEC §3: nothing read back from Redis is
trusted blindly): HMAC-signed under a key derived from SECRET_KEY, naming their wallet
and the instance that polled them."""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

import orjson

from walletd.live.batch import LiveBatch
from walletd.trades.solana import is_signature

log = logging.getLogger("walletd.live.shared")

FORMAT = 1


def feed_key(secret_key: str) -> bytes:
    """The message-signing key: derived from SECRET_KEY, used for nothing else."""
    return hmac.new(secret_key.encode(), b"walletd live feed v1", hashlib.sha256).digest()


def sign(key: bytes, origin: str, wallet: str, batch: LiveBatch) -> bytes:
    payload = orjson.dumps(
        {
            "v": FORMAT,
            "wallet": wallet,
            "origin": origin,
            "since": batch.since,
            "head": batch.head,
            "scanned": batch.scanned,
            "signatures": batch.signatures,
            "trades": [orjson.Fragment(obj) for obj in batch.objects],
            "positions": batch.positions,
            "times": batch.times,
        }
    )
    return hmac.new(key, payload, hashlib.sha256).hexdigest().encode() + b"." + payload


def verify(key: bytes, origin: str, wallet: str, message: bytes) -> LiveBatch | None:
    """The batch in `message`, or None: one `origin` (this instance) sent, or one failing
    the checks (logged at ERROR)."""
    mac, _, payload = message.partition(b".")
    expected = hmac.new(key, payload, hashlib.sha256).hexdigest().encode()
    try:
        if not hmac.compare_digest(mac, expected):
            raise ValueError("bad signature")
        data = orjson.loads(payload)
        if data.get("v") != FORMAT or data.get("wallet") != wallet:
            raise ValueError("another wallet or format")
        if data.get("origin") == origin:
            return None
        return _batch(data)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        log.error("live_message_rejected", extra={"wallet": wallet, "detail": str(exc)})
        return None


def _batch(data: Any) -> LiveBatch:
    scanned = tuple(data["scanned"])
    signatures = tuple(data["signatures"])
    trades = data["trades"]
    positions = tuple(int(p) for p in data["positions"])
    times = tuple(None if t is None else int(t) for t in data["times"])
    since = data["since"]
    if not scanned or not all(isinstance(s, str) and is_signature(s) for s in scanned):
        raise ValueError("bad scanned signatures")
    if since is not None and not (isinstance(since, str) and is_signature(since)):
        raise ValueError("bad since")
    counts = {len(signatures), len(trades), len(positions), len(times)}
    if data["head"] != scanned[0] or len(counts) != 1:
        raise ValueError("inconsistent batch")
    for signature, trade, position in zip(signatures, trades, positions, strict=True):
        if not 0 <= position < len(scanned) or scanned[position] != signature:
            raise ValueError("inconsistent trade")
        if not isinstance(trade, dict) or trade.get("signature") != signature:
            raise ValueError("inconsistent trade")
    return LiveBatch(
        since=since,
        head=scanned[0],
        scanned=scanned,
        signatures=signatures,
        objects=tuple(orjson.dumps(trade) for trade in trades),
        positions=positions,
        times=times,
    )
