"""A follower that stops reading (SPEC §1 live follow, §9 writes): live batches are
written to idle followers by the wallet's publisher itself (walletd/live/feed.py), so
what holds a slow follower back must be its transport, not walletd's memory: once its
transport is paused, batches wait in its queue for its own task, and once it reads
again it gets every trade, in order, once."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.clocks import FakeClock
from tests.sse_client import dechunk, open_slow_reader, parse
from tests.support import WALLET
from tests.waiting import eventually
from walletd.appkeys import STREAMS
from walletd.upstream.demo import _Wallet
from walletd.upstream.demo_live import WINDOW_TICKS, LiveTicks, current_tick, tick_signature
from walletd.upstream.helius.reader import parse_transaction

NOW = 1_800_000_000.0
INTERVAL = 10.0
NOW_TICK = current_tick(WALLET, NOW, INTERVAL)


async def read_until(reader: asyncio.StreamReader, received: bytes, marker: bytes) -> bytes:
    """`received` and what `reader` gives until `marker` is in it and a chunk ends."""
    while marker not in received or not received.endswith(b"\r\n"):
        chunk = await asyncio.wait_for(reader.read(1 << 20), 10)
        assert chunk, "the stream ended"
        received += chunk
    return received


async def test_a_follower_that_stops_reading_holds_its_batches_not_walletds_buffers(
    serve: Any,
) -> None:
    clock = FakeClock(NOW)
    client = await serve(
        wall_clock=clock,
        DEMO_LIVE_INTERVAL=INTERVAL,
        FOLLOW_POLL_INTERVAL=0.1,
        SSE_BATCH_SIZE=1000,  # a batch of a whole window of ticks is one event
        SSE_KEEPALIVE_INTERVAL=60,
    )
    reader, writer = await open_slow_reader(client.port, f"/v4/wallet/{WALLET}/stream?follow=true")
    try:
        received = await read_until(reader, b"", b"event: caught_up\n")
        (stream,) = client.server.app[STREAMS]
        feed = stream.subscription.feed
        newest = NOW_TICK

        async def land_batch() -> int:
            """A window of new ticks; once polled, the size of its event."""
            nonlocal newest
            clock.advance(WINDOW_TICKS * INTERVAL)
            newest += WINDOW_TICKS
            await eventually(lambda: feed.head == tick_signature(WALLET, newest, INTERVAL))
            return len(feed.recent[-1].body)

        # The client reads no more: batches go out until its transport pauses.
        for _ in range(100):
            await land_batch()
            if stream.request.protocol.writing_paused:
                break
        assert stream.request.protocol.writing_paused, "the transport never paused"
        transport = stream.request.transport
        buffered = transport.get_write_buffer_size()
        sizes = [await land_batch() for _ in range(3)]
        # One batch at most (the one the follower's own task wrote before it waited for
        # the drain, with its event's tail and chunk framing); the others are queued.
        assert transport.get_write_buffer_size() - buffered < 2 * min(sizes)

        # It reads again: everything arrives.
        last = b"id: %s\n" % tick_signature(WALLET, newest, INTERVAL).encode()
        received = await read_until(reader, received, last)
    finally:
        writer.close()
    _, _, body = received.partition(b"\r\n\r\n")
    events = parse(dechunk(body, complete=False)).events
    live = events[[e.name for e in events].index("caught_up") + 1 :]
    signatures = [t["signature"] for e in live if e.name == "trades" for t in e.data["trades"]]
    ticks = LiveTicks(INTERVAL, clock)
    wallet = _Wallet(WALLET)
    landed = [ticks.transaction(wallet, k) for k in range(NOW_TICK + 1, newest + 1)]
    assert signatures == [tx["signature"] for tx in landed if parse_transaction(tx, WALLET)]
    numbers = [e.data["batch"] for e in live if e.name == "trades"]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))  # none twice
