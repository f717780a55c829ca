"""One poller per wallet across instances (SPEC §1): a lease in Redis, batches by pub/sub.

Per followed wallet, each instance runs one task: it tries to take the wallet's lease
(SET NX PX STREAM_LEASE_TTL), and refreshes it every third of the TTL while it holds
it. The holder polls the source and publishes each batch on the wallet's channel; every
instance (one subscription per wallet) hands the batches it receives to its followers.
A holder that stops releases the lease; one that crashes loses it within the TTL, and
another instance takes over. Messages are HMAC-signed under a key derived from
SECRET_KEY and name their wallet: one that fails the check is dropped and logged at
ERROR (SPEC §3: nothing read back from Redis is trusted blindly). While Redis is
unreachable each instance polls for itself: degrade, don't fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import uuid
from typing import Any

import orjson
import redis.asyncio as redis

from walletd.errors import DataFetchError, WalletdError
from walletd.live.batch import LiveBatch
from walletd.live.feed import LiveFeeds, WalletFeed
from walletd.ops.redis import REDIS_ERRORS
from walletd.trades.solana import is_signature

log = logging.getLogger(__name__)

FORMAT = 1
# Refresh or release the lease only if it is still ours (a lapsed lease may be another's).
_OURS = "if redis.call('get', KEYS[1]) == ARGV[1] then return "
_REFRESH = _OURS + "redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = _OURS + "redis.call('del', KEYS[1]) end return 0"


def feed_key(secret_key: str) -> bytes:
    """The message-signing key: derived from SECRET_KEY, used for nothing else."""
    return hmac.new(secret_key.encode(), b"walletd live feed v1", hashlib.sha256).digest()


class SharedPolling:
    """The Coordinator of walletd/live/feed.py over Redis."""

    def __init__(
        self,
        client: redis.Redis,
        feeds: LiveFeeds,
        *,
        prefix: str,
        lease_ttl_s: float,
        secret_key: str,
    ) -> None:
        self._redis = client
        self._feeds = feeds
        self._prefix = prefix
        self._ttl_s = lease_ttl_s
        self._key = feed_key(secret_key)
        self.instance = uuid.uuid4().hex
        self.holding: set[str] = set()  # wallets whose lease this instance holds

    def start(self, feed: WalletFeed) -> asyncio.Task[None]:
        return asyncio.create_task(self._run(feed), name=f"live-{feed.wallet[:8]}")

    async def close(self) -> None:
        return None

    def _names(self, wallet: str) -> tuple[str, str]:
        return f"{self._prefix}live:{FORMAT}:{wallet}", f"{self._prefix}live-lease:{wallet}"

    async def share(self, wallet: str, batch: LiveBatch) -> None:
        """Publish a batch this instance polled (best effort)."""
        channel, _ = self._names(wallet)
        try:
            await self._redis.publish(channel, self._sign(wallet, batch))
        except REDIS_ERRORS as exc:
            log.warning("live_publish_failed", extra={"error": type(exc).__name__})

    async def _run(self, feed: WalletFeed) -> None:
        wallet = feed.wallet
        channel, lease = self._names(wallet)
        loop = asyncio.get_running_loop()
        interval = self._feeds.poll_interval_s
        pubsub = self._redis.pubsub()
        subscribed = holder = False
        next_lease = next_poll = loop.time()
        next_poll += interval
        try:
            while True:
                now = loop.time()
                if now >= next_lease:
                    subscribed, holder = await self._lease(
                        pubsub, channel, lease, subscribed, holder
                    )
                    next_lease = now + self._ttl_s / 3
                if holder and now >= next_poll:
                    next_poll = max(next_poll + interval, now)
                    try:
                        await feed.poll()
                    except WalletdError as exc:
                        log.warning("live_poll_failed", extra={"code": exc.code})
                        feed.fail(exc)
                        return
                    except Exception as exc:
                        log.exception("live_poll_failed")
                        feed.fail(DataFetchError(repr(exc)))
                        return
                wake = min(next_lease, next_poll if holder else next_lease)
                await self._receive(feed, pubsub, subscribed, max(wake - loop.time(), 0))
        finally:
            self.holding.discard(wallet)
            await asyncio.shield(self._stop(pubsub, lease, holder))

    async def _lease(
        self, pubsub: Any, channel: str, lease: str, subscribed: bool, holder: bool
    ) -> tuple[bool, bool]:
        """(subscribed, holder) after one round of taking or refreshing the lease; with
        Redis unreachable, (False, True): poll for ourselves."""
        ttl_ms = max(int(self._ttl_s * 1000), 1)
        try:
            if not subscribed:
                await pubsub.subscribe(channel)
                subscribed = True
            if holder:
                holder = bool(await self._redis.eval(_REFRESH, 1, lease, self.instance, ttl_ms))
            if not holder:
                holder = bool(await self._redis.set(lease, self.instance, nx=True, px=ttl_ms))
        except REDIS_ERRORS as exc:
            log.warning("live_lease_unreachable", extra={"error": type(exc).__name__})
            return False, True
        wallet = lease.rsplit(":", 1)[-1]
        if holder:
            self.holding.add(wallet)
        else:
            self.holding.discard(wallet)
        return subscribed, holder

    async def _receive(
        self, feed: WalletFeed, pubsub: Any, subscribed: bool, wait_s: float
    ) -> None:
        """Hand the batches other instances publish to our followers until `wait_s` has
        passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            left = deadline - loop.time()
            if not subscribed:
                await asyncio.sleep(max(left, 0))
                return
            if left <= 0:
                return
            try:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
            except REDIS_ERRORS:
                await asyncio.sleep(max(deadline - loop.time(), 0))
                return
            if message is not None and isinstance(message.get("data"), bytes):
                batch = self._verify(feed.wallet, message["data"])
                if batch is not None:
                    feed.publish(batch)

    async def _stop(self, pubsub: Any, lease: str, holder: bool) -> None:
        with contextlib.suppress(*REDIS_ERRORS):
            if holder:
                await self._redis.eval(_RELEASE, 1, lease, self.instance)
        with contextlib.suppress(*REDIS_ERRORS):
            await pubsub.aclose()

    def _sign(self, wallet: str, batch: LiveBatch) -> bytes:
        payload = orjson.dumps(
            {
                "v": FORMAT,
                "wallet": wallet,
                "origin": self.instance,
                "since": batch.since,
                "head": batch.head,
                "scanned": batch.scanned,
                "signatures": batch.signatures,
                "trades": [orjson.Fragment(obj) for obj in batch.objects],
                "positions": batch.positions,
                "times": batch.times,
            }
        )
        return hmac.new(self._key, payload, hashlib.sha256).hexdigest().encode() + b"." + payload

    def _verify(self, wallet: str, message: bytes) -> LiveBatch | None:
        """The batch in `message`, or None: our own, or one failing the checks (logged)."""
        mac, _, payload = message.partition(b".")
        expected = hmac.new(self._key, payload, hashlib.sha256).hexdigest().encode()
        try:
            if not hmac.compare_digest(mac, expected):
                raise ValueError("bad signature")
            data = orjson.loads(payload)
            if data.get("v") != FORMAT or data.get("wallet") != wallet:
                raise ValueError("another wallet or format")
            if data.get("origin") == self.instance:
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
