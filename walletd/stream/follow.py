"""Live follow (`follow=true`, SPEC §1): the history, `caught_up`, then live `trades`.

Ids: during the history `<oldest trade sent>.<head>`, where `<head>` is the wallet's
newest signature when the follow began; `caught_up` carries `<head>`; live events the
newest signature scanned. A follower's position is the newest signature it has covered.

No trade lost, none twice: the follower subscribes to the wallet's feed before it
fetches whatever the feed cannot vouch for, and places every batch against its own
position: a batch that starts at it is sent whole; one that contains it, from it on;
one that ends inside what it has covered, not at all; anything else (a batch the
follower cannot place) is resolved by asking the source for what is newer than its
position, trades it has already sent dropped by signature.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from collections.abc import Set as AbstractSet

from aiohttp import web

from walletd.appkeys import LIVE, METRICS, SOURCE
from walletd.errors import InvalidEventId
from walletd.live.batch import LiveBatch, build_batch
from walletd.live.feed import Subscription
from walletd.stream import sse
from walletd.stream.connection import WalletStream
from walletd.stream.events import CaughtUpEvent
from walletd.stream.pending import PendingWrite
from walletd.trades.solana import is_signature
from walletd.upstream.pages import ScannedPage
from walletd.upstream.recording import Recording
from walletd.upstream.source import page_signatures

_NOTHING: frozenset[str] = frozenset()


def follow_cursor(cursor: str | None) -> tuple[str | None, str | None]:
    """(history cursor, head) of a follow stream's Last-Event-ID: `<oldest>.<head>`
    resumes inside the history, `<sig>` after it. Raises InvalidEventId."""
    if cursor is None:
        return None, None
    oldest, dot, head = cursor.partition(".")
    if dot and is_signature(oldest) and is_signature(head):
        return oldest, head
    if not dot and is_signature(cursor):
        return None, cursor
    raise InvalidEventId(f"bad follow cursor {cursor[:200]!r}")


def _relabel(pending: PendingWrite, frame: bytes, last_id: str, tail: bytes) -> None:
    """Queue a shared history frame with `tail` (`.<head>`) after its `id: <last_id>`:
    the id line's end is known from the signature (base58, a byte a character), so the
    frame is neither scanned nor copied here, only joined into the write."""
    cut = 4 + len(last_id)
    view = memoryview(frame)
    pending.add(view[:cut], tail, view[cut:])


class FollowStream(WalletStream):
    """A WalletStream that ends its history with `caught_up` and stays live."""

    __slots__ = (
        "beat_timer",
        "covered",
        "head",
        "in_history",
        "pending",
        "position",
        "subscription",
    )
    follows = True

    def __init__(
        self,
        request: web.Request,
        wallet: str,
        cursor: str | None,
        limit: int,
        stream_id: str,
    ) -> None:
        before, head = follow_cursor(cursor)
        super().__init__(request, wallet, before or head, limit, stream_id)
        self.last_event_id = cursor
        self.in_history = cursor is None or before is not None
        self.head = head  # known from a cursor; else from the history's first page
        self.position = head
        # Signatures covered around `position` (after a catch-up); empty, shared, else.
        self.covered: AbstractSet[str] = _NOTHING
        self.subscription: Subscription | None = None
        # Catch-ups fetched before the live phase, sent when it starts.
        self.pending: list[tuple[LiveBatch, list[int]]] = []
        self.beat_timer: asyncio.TimerHandle | None = None  # the live phase's heartbeat timer

    async def start(self) -> None:
        """Before the response: a resumed follow subscribes now. A head the wallet's feed
        cannot vouch for is checked first, by fetching what is newer than it (an unknown
        head is the 400), and the follower subscribes from where that ends."""
        if self.head is None:
            return
        if not self.request.app[LIVE].vouches(self.wallet, self.head):
            await self._catch_up(verify=True, send=False)
        await self._subscribe(self.position, verify=False)

    async def _subscribe(self, position: str | None, *, verify: bool) -> None:
        self.position = position
        self.subscription, behind = self.request.app[LIVE].subscribe(self.wallet, position)
        if behind:
            await self._catch_up(verify=verify, send=False)

    def close(self) -> None:
        if self.subscription is not None:
            self.request.app[LIVE].unsubscribe(self.subscription)
            self.subscription = None

    async def run(self, recording: Recording) -> None:
        try:
            await super().run(recording)
        finally:
            self.close()

    async def _stream_history(self, recording: Recording) -> bool:
        if not self.in_history:
            return False
        if self.subscription is None:  # a new follow: its head is the history's
            await self._write_pending()  # the opening events, before any wait
            self.head = await self._history_head(recording)
            await self._subscribe(self.head, verify=False)
        return await super()._stream_history(recording)

    async def _history_head(self, recording: Recording) -> str | None:
        """The newest signature listed; for a history from the shared cache (which keeps
        trades only), the newest trade: newer transactions then are scanned again, but
        nothing is lost. A cached history without trades asks the source for its head
        (None would mean: poll the whole history)."""
        index = 0
        while (page := await self._next_page(recording, index)) is not None:
            if recording.head is not None:
                return recording.head
            if len(page):
                return page.signatures[0]
            index += 1
        if index == 0:
            return None  # no transactions at all
        pages = self.request.app[SOURCE].pages(self.wallet, None)
        try:
            first = await anext(pages, None)
        finally:
            await pages.aclose()  # type: ignore[attr-defined]
        listed = [] if first is None else page_signatures(first)
        return listed[0] if listed else None

    def _queue_page(self, page: ScannedPage) -> None:
        self._queue_relabelled(page.frames, page.last_ids)

    def _queue_frame(self, frame: bytes, last_id: str) -> None:
        self._queue_relabelled((frame,), (last_id,))

    def _queue_relabelled(self, frames: Sequence[bytes], last_ids: Sequence[str]) -> None:
        """Queue history frames with `.<head>` after each id (SPEC §1's history cursor)."""
        pending = self.queued
        if self.head is None:  # pragma: no cover - trades imply a head
            pending.add_frames(tuple(frames), sum(map(len, frames)))
            self.last_event_id = last_ids[-1]
            return
        tail = b".%s" % self.head.encode()
        for frame, last_id in zip(frames, last_ids, strict=True):
            _relabel(pending, frame, last_id, tail)
        self.last_event_id = f"{last_ids[-1]}.{self.head}"

    async def _finish(self, recording: Recording, truncated: bool) -> None:
        caught_up: CaughtUpEvent = {
            "trades_found": self.trades_sent,
            "signatures_scanned": self.scanned,
            "duration_s": round(time.monotonic() - self.started, 3),
            "summary": self._summary(recording).to_dict(),
        }
        if self.head is not None:
            self.last_event_id = self.head
        await self._event("caught_up", caught_up, event_id=self.head)
        await self._live()

    # --- the live phase ---

    async def _live(self) -> None:
        """Never returns: the stream ends by error, stop, timeout or disconnect."""
        subscription = self.subscription
        assert subscription is not None
        for caught_up, chosen in self.pending:
            await self._send(caught_up, chosen)
        self.pending.clear()
        keepalive = self.settings.sse_keepalive_interval_s
        self._arm(keepalive)
        try:
            while True:
                batch = subscription.next()
                if batch is not None:
                    await self._place(batch)
                elif time.monotonic() >= self.last_write + keepalive:
                    await self.heartbeat()
                else:
                    subscription.express = self  # idle at our position: the publisher writes
                    try:
                        await subscription.wait()
                    finally:
                        subscription.express = None
        finally:
            if self.beat_timer is not None:
                self.beat_timer.cancel()

    def _arm(self, keepalive: float) -> None:
        """The heartbeat timer: one per follower, set to the last write's deadline and
        re-armed when it fires (not a timeout per batch: with 10,000 followers those
        were a tenth of the live phase's CPU); when the deadline has passed, it wakes
        the follower to send a heartbeat."""
        due_in = self.last_write + keepalive - time.monotonic()
        if due_in <= 0 and self.subscription is not None:
            self.subscription.nudge()
            due_in = keepalive
        loop = asyncio.get_running_loop()
        self.beat_timer = loop.call_later(due_in, self._arm, keepalive)

    async def deliver(self, batch: LiveBatch) -> bool:
        """Express delivery, in the publisher's task while ours waits idle (live/feed.py):
        a batch that starts at our position and makes one event. Anything to place or
        split, or a client not keeping up (its transport paused), is left to our task."""
        transport = self.request.transport
        if (
            batch.since != self.position
            or self.covered
            or len(batch) > self.settings.sse_batch_size
            or transport is None
            or transport.is_closing()  # gone: our task meets it and ends the stream
            or self.request.protocol.writing_paused
        ):
            return False
        await self._advance(batch, range(len(batch)), wait=False)
        return True

    async def _place(self, batch: LiveBatch) -> None:
        """Send what `batch` holds past our position (see the module docstring)."""
        position = self.position
        if batch.since == position:
            await self._advance(batch, self._fresh(batch, None))
        elif (at := batch.index(position)) is not None:
            await self._advance(batch, self._fresh(batch, at))
        elif batch.head == position or batch.head in self.covered:
            return  # all of it is behind us
        else:
            await self._catch_up(verify=False, send=True)

    async def _advance(self, batch: LiveBatch, chosen: Sequence[int], *, wait: bool = True) -> None:
        """Send trades `chosen` of `batch` and stand at its head: from here on batches
        follow each other."""
        await self._send(batch, chosen, wait=wait)
        self.covered = _NOTHING
        self.position = batch.head

    def _fresh(self, batch: LiveBatch, before: int | None) -> list[int]:
        """The trades of `batch` listed before scanned index `before` (None: all) that
        we have not covered, as indexes into its trades."""
        covered = self.covered
        return [
            i
            for i, (signature, at) in enumerate(zip(batch.signatures, batch.positions, strict=True))
            if (before is None or at < before) and signature not in covered
        ]

    async def _catch_up(self, *, verify: bool, send: bool) -> None:
        """Fetch what is newer than our position: sent now (`send`) or kept for the live
        phase; its signatures are remembered so queued batches overlapping it are placed."""
        source = self.request.app[SOURCE]
        pages = await source.newer(self.wallet, self.position, verify=verify)
        batch = build_batch(pages, self.wallet, self.position)
        if batch is None:
            return
        if self.subscription is not None:
            self.subscription.feed.remember(batch)
        chosen = self._fresh(batch, None)
        covered = {*self.covered, *batch.scanned}
        if self.position is not None:
            covered.add(self.position)
        self.covered = covered
        self.position = batch.head
        if send:
            await self._send(batch, chosen)
        else:
            self.pending.append((batch, chosen))

    async def _send(self, batch: LiveBatch, chosen: Sequence[int], *, wait: bool = True) -> None:
        """Send trades `chosen` of `batch` in events of at most SSE_BATCH_SIZE, oldest
        first; the last event's id is the batch's head. The whole batch is one event of
        prebuilt bytes plus this connection's `batch` and `total` (`wait=False`: written
        without suspending, see `_write`)."""
        size = self.settings.sse_batch_size
        if len(chosen) == len(batch) <= size:
            if chosen:
                await self._send_frame(batch.body, batch.head, len(chosen), wait=wait)
        else:
            for start in range(0, len(chosen), size):
                part = chosen[start : start + size]
                event_id = batch.head if start + size >= len(chosen) else batch.signatures[part[-1]]
                body = sse.trades_prefix(event_id) + b",".join(batch.objects[i] for i in part)
                await self._send_frame(body, event_id, len(part))
        if chosen:
            self.request.app[METRICS].live_delivered(batch)

    async def _send_frame(
        self, body: bytes, event_id: str, count: int, *, wait: bool = True
    ) -> None:
        self.batches += 1
        self.trades_sent += count
        self.last_event_id = event_id
        await self._write(body + sse.trades_suffix(self.batches, self.trades_sent), wait=wait)
