"""One poller per wallet across instances (SPEC §1): a lease in Redis, batches by pub/sub.

Per process, whatever the number of followed wallets:
- one pub/sub connection: each followed wallet's channel is subscribed on it, and one
  dispatcher task hands every message to its wallet's feed;
- one lease task: every third of STREAM_LEASE_TTL (and at once when a wallet starts),
  one pipelined round trip refreshes the leases this instance holds and tries to take
  the others (SET NX PX).
Each followed wallet has a task that polls the source every FOLLOW_POLL_INTERVAL while
this instance holds the wallet's lease, and publishes each batch on the wallet's
channel. A holder that stops releases the lease; one that crashes loses it within the
TTL, and another instance takes over. Messages are HMAC-signed (walletd/live/signed.py);
one that fails the check is dropped and logged at ERROR. While Redis is unreachable each
instance polls for itself: degrade, don't fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import redis.asyncio as redis

from walletd.live.batch import LiveBatch
from walletd.live.feed import Cadence, LiveFeeds, WalletFeed
from walletd.live.signed import FORMAT, feed_key, sign, verify
from walletd.observability.logs import detached
from walletd.ops.redis import REDIS_ERRORS

log = logging.getLogger(__name__)

# Refresh or release the lease only if it is still ours (a lapsed lease may be another's).
_OURS = "if redis.call('get', KEYS[1]) == ARGV[1] then return "
_REFRESH = _OURS + "redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = _OURS + "redis.call('del', KEYS[1]) end return 0"
_READ_S = 1.0  # the dispatcher's read timeout (it loops; a stop cancels it)
_RETRY_S = 0.5  # after a failed read, before the next (Redis unreachable)


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
        self.unreachable = False  # the last lease round failed: everyone polls
        self._wallets: dict[str, WalletFeed] = {}  # followed here, by wallet
        self._routes: dict[bytes, WalletFeed] = {}  # subscribed channels
        self._pubsub = client.pubsub()
        self._connected = asyncio.Event()  # the pub/sub connection exists
        self._round = asyncio.Event()  # a wallet wants its lease round now
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, feed: WalletFeed) -> asyncio.Task[None]:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._dispatch(), name="live-dispatcher", context=detached()),
                asyncio.create_task(self._leases(), name="live-leases", context=detached()),
            ]
        self._wallets[feed.wallet] = feed
        self._round.set()
        return asyncio.create_task(
            self._run(feed), name=f"live-{feed.wallet[:8]}", context=detached()
        )

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        with contextlib.suppress(*REDIS_ERRORS):
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]

    def _channel(self, wallet: str) -> str:
        return f"{self._prefix}live:{FORMAT}:{wallet}"

    def _lease(self, wallet: str) -> str:
        return f"{self._prefix}live-lease:{wallet}"

    async def share(self, wallet: str, batch: LiveBatch) -> None:
        """Publish a batch this instance polled (best effort)."""
        message = sign(self._key, self.instance, wallet, batch)
        try:
            await self._redis.publish(self._channel(wallet), message)
        except REDIS_ERRORS as exc:
            log.warning("live_publish_failed", extra={"error": type(exc).__name__})

    # --- per wallet: subscribe, poll while holding the lease ---

    async def _run(self, feed: WalletFeed) -> None:
        wallet = feed.wallet
        cadence = Cadence(self._feeds.poll_interval_s)
        subscribed = await self._subscribe(feed)
        reconciled = False  # polled once since the channel's subscription
        try:
            while True:
                await cadence.wait()
                if not subscribed:
                    subscribed = await self._subscribe(feed)
                    reconciled = False
                if wallet in self.holding or self.unreachable:
                    if not await feed.poll_or_fail():
                        return
                elif subscribed and not reconciled:
                    # A batch the holder published before our subscription reached Redis
                    # never comes: poll once, a beat after subscribing, for our followers.
                    reconciled = True
                    if not await feed.poll_or_fail(share=False):
                        return
        finally:
            await asyncio.shield(self._stop(feed))

    async def _subscribe(self, feed: WalletFeed) -> bool:
        """Route the wallet's channel to `feed`, and subscribe to it; False while Redis
        is unreachable (the caller tries again)."""
        channel = self._channel(feed.wallet)
        self._routes[channel.encode()] = feed
        try:
            await self._pubsub.subscribe(channel)
        except REDIS_ERRORS as exc:
            log.warning("live_subscribe_failed", extra={"error": type(exc).__name__})
            return False
        self._connected.set()
        return True

    async def _stop(self, feed: WalletFeed) -> None:
        """Unsubscribe and release the lease, unless a newer feed of the wallet took over."""
        wallet = feed.wallet
        channel = self._channel(wallet)
        if self._wallets.get(wallet) is not feed:
            return
        del self._wallets[wallet]
        if self._routes.get(channel.encode()) is feed:
            del self._routes[channel.encode()]
            with contextlib.suppress(*REDIS_ERRORS):
                await self._pubsub.unsubscribe(channel)
        if wallet in self.holding:
            self.holding.discard(wallet)
            with contextlib.suppress(*REDIS_ERRORS):
                await self._redis.eval(_RELEASE, 1, self._lease(wallet), self.instance)

    # --- per process: the pub/sub dispatcher and the lease rounds ---

    async def _dispatch(self) -> None:
        """Hand every message of the pub/sub connection to its wallet's feed."""
        await self._connected.wait()
        while True:
            try:
                message = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=_READ_S
                )
            except REDIS_ERRORS as exc:
                log.warning("live_receive_failed", extra={"error": type(exc).__name__})
                await asyncio.sleep(_RETRY_S)
                continue
            if message is None or not isinstance(data := message.get("data"), bytes):
                continue
            feed = self._routes.get(message.get("channel") or b"")
            if feed is not None:
                batch = verify(self._key, self.instance, feed.wallet, data)
                if batch is not None:
                    await feed.publish(batch)

    async def _leases(self) -> None:
        """Every third of the TTL, or when a wallet starts: one round for every wallet."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._ttl_s / 3):
                    await self._round.wait()
            self._round.clear()
            await self._lease_round()

    async def _lease_round(self) -> None:
        """Refresh the leases we hold, try to take the others: one pipelined round trip.
        With Redis unreachable, every wallet polls for itself until it is back."""
        wallets = list(self._wallets)
        if not wallets:
            return
        held = self.holding & set(wallets)
        ttl_ms = max(int(self._ttl_s * 1000), 1)
        pipe = self._redis.pipeline(transaction=False)
        for wallet in wallets:
            lease = self._lease(wallet)
            if wallet in held:
                pipe.eval(_REFRESH, 1, lease, self.instance, ttl_ms)
            pipe.set(lease, self.instance, nx=True, px=ttl_ms)
        try:
            answers = iter(await pipe.execute())
        except REDIS_ERRORS as exc:
            if not self.unreachable:
                log.warning("live_lease_unreachable", extra={"error": type(exc).__name__})
            self.unreachable = True
            return
        self.unreachable = False
        for wallet in wallets:
            refreshed = bool(next(answers)) if wallet in held else False
            taken = bool(next(answers))
            if (refreshed or taken) and wallet in self._wallets:
                self.holding.add(wallet)
            else:
                self.holding.discard(wallet)
                if taken:  # the wallet stopped meanwhile: give the lease back
                    with contextlib.suppress(*REDIS_ERRORS):
                        await self._redis.eval(_RELEASE, 1, self._lease(wallet), self.instance)
