"""A stream's way out: every byte of it, prebuilt `trades` frames included, is queued and
written here, as one HTTP chunk per write, and counted (where compression and byte
accounting plug in, SPEC §9)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import cast

from aiohttp import web
from aiohttp.http_writer import StreamWriter

from walletd.stream import sse
from walletd.stream.pending import PendingWrite
from walletd.stream.response import write_chunk


class StreamOutput:
    """What a stream has queued and sent: bytes, events, the time of its last write."""

    __slots__ = ("bytes_sent", "events", "last_write", "queued", "request", "response")

    def __init__(self, request: web.Request, response: web.StreamResponse) -> None:
        self.request = request
        self.response = response
        self.queued = PendingWrite()  # frames for the next write
        self.last_write = time.monotonic()  # of the last write that completed
        self.bytes_sent = self.events = 0

    async def _event(
        self, name: str, data: Mapping[str, object], *, event_id: str | None = None
    ) -> None:
        """Write an event, after whatever is queued (in the same write)."""
        self.queued.add(sse.event_frame(name, data, event_id=event_id))
        await self._write_pending()

    async def _write_pending(self) -> None:
        """Write the queued frames (if any) as one. Their counters and ids were set as
        they were queued: once the bytes are in the transport they are delivered or the
        connection is dead, so a write cut short still sent them."""
        if self.queued.events:
            parts, size, events = self.queued.take()
            await self._write(*parts, size=size, events=events)

    async def _write(
        self,
        *parts: bytes | memoryview,
        size: int | None = None,
        events: int = 1,
        wait: bool = True,
    ) -> None:
        """The one way out: frames (or the parts they are joined from; `size` their length
        in all) written as they are, as one HTTP chunk, never copied here, then counted.
        `wait=False` (one frame) never suspends: what the socket does not take stays in
        the transport's buffer (for a publisher writing to many streams in turn, which
        first checks that the transport is not paused)."""
        if size is None:
            size = sum(map(len, parts))
        if wait:
            await write_chunk(self.response, parts, size)
        else:
            (frame,) = parts
            await cast(StreamWriter, self.request.writer).write(frame, drain=False)
        self.last_write = time.monotonic()
        self.bytes_sent += size
        self.events += events
