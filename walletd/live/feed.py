"""Live follow's fan-out (SPEC §1): one poller per followed wallet, many followers.

A WalletFeed exists while a wallet has followers in this process. Its poller asks the
source for what is newer than the feed's head every FOLLOW_POLL_INTERVAL and hands the
batch, parsed and encoded once, to every follower's bounded queue. The first follower
sets where the feed starts (its own position); a later one whose position is the feed's
head, or the start of a batch the feed still remembers, needs no upstream call. Any
other position is caught up by the follower itself (walletd/stream/follow.py).

With Redis, who polls a wallet is decided across instances (walletd/live/shared.py):
the holder of the wallet's lease polls and publishes; everyone else's feed is fed by
those messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from walletd.errors import DataFetchError, ServiceUnavailable, WalletdError
from walletd.live.batch import LiveBatch, build_batch
from walletd.observability.logs import detached
from walletd.upstream.source import TradeSource

log = logging.getLogger(__name__)

RECENT_BATCHES = 32  # remembered per wallet, replayed to followers that start behind
CATCH_UPS = 4  # followers' catch-ups remembered per wallet, by where they start
CATCH_UP_SIZE = 1000  # signatures at most in a remembered catch-up (bounded memory)
BACKLOG = 256  # batches a follower may have queued before it is ended as too slow


class Express(Protocol):
    """A follower that takes a batch from the publisher itself (WalletFeed.publish)."""

    async def deliver(self, batch: LiveBatch) -> bool:
        """Write `batch` now, without suspending; False leaves it to the queue."""
        ...


class Subscription:
    """One follower's queue of batches: bounded; an error ends it.

    While the follower waits idle at the feed's head, `express` is the follower: the
    publisher writes a batch to it directly. Waking 10,000 tasks for each batch cost
    more than the writes (a future, a wake-up and a placement per follower per batch),
    and each wait's future outlived the young GC generations, so full collections of
    hundreds of milliseconds followed (bench/follow_load.py)."""

    __slots__ = ("_queue", "_waiter", "_woken", "error", "express", "feed")

    def __init__(self, feed: WalletFeed) -> None:
        self.feed = feed
        # Both made only when needed: an asyncio.Event and a deque were two empty
        # deques (about 1.3 KB) on each of 10,000 idle followers.
        self._queue: deque[LiveBatch] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._woken = False  # woken since `next` last found nothing
        self.error: WalletdError | None = None
        self.express: Express | None = None

    async def offer(self, batch: LiveBatch) -> None:
        """Hand `batch` to the follower: written at once by express, else queued."""
        express = self.express
        if express is None or self._queue or self.error is not None:
            self.put(batch)
        elif not await express.deliver(batch):
            self.put(batch)

    def put(self, batch: LiveBatch) -> None:
        if self.error is not None:
            return
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        if len(queue) >= BACKLOG:
            self._queue = None  # the follower is too slow: end it, resumable, at once
            self.error = ServiceUnavailable("follower too far behind", retry_after=1)
        else:
            queue.append(batch)
        self._wake()

    def fail(self, exc: WalletdError) -> None:
        """End the follower with `exc` once it has taken the batches queued before."""
        if self.error is None:
            self.error = exc
            self._wake()

    def next(self) -> LiveBatch | None:
        """The next batch, None when none is queued; raises the error once drained."""
        queue = self._queue
        if queue:
            batch = queue.popleft()
            if not queue:
                self._queue = None
            return batch
        if self.error is not None:
            raise self.error
        self._woken = False
        return None

    async def wait(self) -> None:
        """Until a batch, an error or a nudge arrives (at once if one came since `next`)."""
        if self._woken:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def nudge(self) -> None:
        """Wake the follower with nothing queued (its heartbeat is due)."""
        self._wake()

    def _wake(self) -> None:
        self._woken = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Cadence:
    """A poller's fixed rate, from a random phase. Wallets whose followers arrive together
    (a ramp, a reconnect storm after a drain) would otherwise poll in the same instant
    forever, and every follower of every wallet would be written to in one burst."""

    __slots__ = ("_due", "_interval", "_loop")

    def __init__(self, interval_s: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._interval = interval_s
        self._due = self._loop.time() - random.random() * interval_s

    async def wait(self) -> None:
        """Until the next beat; after a slow poll, the next one (no burst to catch up)."""
        now = self._loop.time()
        self._due = max(self._due + self._interval, now)
        await asyncio.sleep(self._due - now)


class Coordinator(Protocol):
    """Who polls a wallet when several instances follow it (shared.py)."""

    def start(self, feed: WalletFeed) -> asyncio.Task[None]: ...

    async def share(self, wallet: str, batch: LiveBatch) -> None: ...

    async def close(self) -> None: ...


class WalletFeed:
    """One wallet's live feed in this process."""

    def __init__(self, wallet: str, feeds: LiveFeeds) -> None:
        self.wallet = wallet
        self.feeds = feeds
        self.head: str | None = None
        self.started = False  # `head` is set (by the first follower, then by batches)
        self.recent: deque[LiveBatch] = deque(maxlen=RECENT_BATCHES)
        self.catch_ups: dict[str | None, LiveBatch] = {}
        self.subscribers: set[Subscription] = set()
        self.task: asyncio.Task[None] | None = None

    def subscribe(self, position: str | None) -> tuple[Subscription, bool]:
        """A queue of the batches after `position`, and whether the follower must catch
        up by itself from `position` (the feed cannot say what lies between)."""
        sub = Subscription(self)
        behind = False
        if not self.started:
            self.head, self.started = position, True
        elif position != self.head:
            replay = self._after(position)
            behind = replay is None
            for batch in replay or ():
                sub.put(batch)
        self.subscribers.add(sub)
        return sub, behind

    def _after(self, position: str | None) -> list[LiveBatch] | None:
        """The remembered batches from `position` to the head, if unbroken: polled ones,
        or a follower's catch-up from `position` and the polled ones after it."""
        polled = self._polled_after(position)
        jump = self.catch_ups.get(position)
        if polled is not None or jump is None:
            return polled
        if jump.head == self.head:
            return [jump]
        rest = self._polled_after(jump.head)
        return None if rest is None else [jump, *rest]

    def remember(self, catch_up: LiveBatch) -> None:
        """A follower's catch-up, for the next followers starting where it started: many
        followers of a wallet start from one cached history's head, and fetching what
        is newer than it once for all keeps a ramp's upstream calls per wallet."""
        if len(catch_up.scanned) > CATCH_UP_SIZE:
            return
        self.catch_ups.pop(catch_up.since, None)
        self.catch_ups[catch_up.since] = catch_up
        if len(self.catch_ups) > CATCH_UPS:
            del self.catch_ups[next(iter(self.catch_ups))]

    def _polled_after(self, position: str | None) -> list[LiveBatch] | None:
        """The polled batches from the one starting at `position`, if unbroken."""
        recent = list(self.recent)
        for start, batch in enumerate(recent):
            if batch.since == position:
                tail = recent[start:]
                if all(a.head == b.since for a, b in itertools.pairwise(tail)):
                    return tail
        return None

    async def publish(self, batch: LiveBatch) -> None:
        self.head, self.started = batch.head, True
        self.recent.append(batch)
        for sub in tuple(self.subscribers):
            await sub.offer(batch)
        self.feeds.observe_batch(batch)

    def fail(self, exc: WalletdError) -> None:
        """The upstream failed for good: every follower ends with `exc` (resumable)."""
        self.feeds.forget(self)
        for sub in self.subscribers:
            sub.fail(exc)

    async def poll_or_fail(self, *, share: bool = True) -> bool:
        """One poll; on a failure every follower ends (resumably) and this says False, so
        the poller stops. Whoever polls (this process's poller, or the lease holder's);
        without `share`, what it finds is for this process's followers only."""
        try:
            await self.poll(share=share)
        except WalletdError as exc:
            log.warning("live_poll_failed", extra={"code": exc.code, "detail": str(exc)})
            self.fail(exc)
            return False
        except Exception as exc:  # a bug must still end the followers, resumably
            log.exception("live_poll_failed")
            self.fail(DataFetchError(repr(exc)))
            return False
        return True

    async def poll(self, *, share: bool = True) -> None:
        """Ask the source for what is newer than `head`; publish it. Raises WalletdError."""
        feeds, since = self.feeds, self.head  # a batch from Redis may move `head` meanwhile
        sent = time.monotonic()
        pages = await feeds.source.newer(self.wallet, since, verify=False)
        feeds.on_poll(time.monotonic() - sent)
        batch = build_batch(pages, self.wallet, since)
        if batch is not None:
            await feeds.publish(self, batch, share=share)


class LiveFeeds:
    """Every live feed of this process, by wallet; pollers start and stop with them."""

    def __init__(
        self,
        source: TradeSource,
        *,
        poll_interval_s: float,
        on_poll: Callable[[float], None] = lambda seconds: None,
        on_batch: Callable[[LiveBatch], None] = lambda batch: None,
    ) -> None:
        self.source = source
        self.poll_interval_s = poll_interval_s
        self.on_poll = on_poll
        self._on_batch = on_batch
        self.coordinator: Coordinator | None = None
        self._feeds: dict[str, WalletFeed] = {}

    @property
    def followers(self) -> int:
        return sum(len(feed.subscribers) for feed in self._feeds.values())

    @property
    def feeds(self) -> int:
        return len(self._feeds)

    def vouches(self, wallet: str, position: str) -> bool:
        """Whether `position` is a signature this process's feed of `wallet` listed."""
        feed = self._feeds.get(wallet)
        return (
            feed is not None
            and feed.started
            and (position == feed.head or feed._after(position) is not None)
        )

    def subscribe(self, wallet: str, position: str | None) -> tuple[Subscription, bool]:
        """Follow `wallet` from `position` (see WalletFeed.subscribe); starts its poller."""
        feed = self._feeds.get(wallet)
        if feed is None:
            feed = self._feeds[wallet] = WalletFeed(wallet, self)
        subscription = feed.subscribe(position)
        if feed.task is None:
            coordinator = self.coordinator
            feed.task = (
                coordinator.start(feed)
                if coordinator is not None
                else asyncio.create_task(
                    self.run_poller(feed), name=f"poller-{wallet[:8]}", context=detached()
                )
            )
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        feed = subscription.feed
        feed.subscribers.discard(subscription)
        if not feed.subscribers:
            self.forget(feed)

    def forget(self, feed: WalletFeed) -> None:
        """Drop `feed` and stop its poller (its followers are gone or failed)."""
        if self._feeds.get(feed.wallet) is feed:
            del self._feeds[feed.wallet]
        if feed.task is not None and feed.task is not asyncio.current_task():
            feed.task.cancel()

    async def publish(self, feed: WalletFeed, batch: LiveBatch, *, share: bool = True) -> None:
        """Hand a polled batch to this process's followers (and with `share`, the
        coordinator sends it to the other instances')."""
        await feed.publish(batch)
        if share and self.coordinator is not None:
            await self.coordinator.share(feed.wallet, batch)

    def observe_batch(self, batch: LiveBatch) -> None:
        self._on_batch(batch)

    async def run_poller(self, feed: WalletFeed) -> None:
        """Poll every interval, on a fixed cadence, until cancelled or failed."""
        cadence = Cadence(self.poll_interval_s)
        while True:
            await cadence.wait()
            if not await feed.poll_or_fail():
                return

    async def close(self) -> None:
        tasks = [feed.task for feed in self._feeds.values() if feed.task is not None]
        self._feeds.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.coordinator is not None:
            await self.coordinator.close()
