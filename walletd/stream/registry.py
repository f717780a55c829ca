"""The open streams of this process: for shutdown, revocation, reaping and metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Protocol

from walletd.errors import WalletdError


class Stoppable(Protocol):
    stream_id: str
    key_id: str | None  # the API key it runs under, when keys are required
    last_write: float  # time.monotonic() of the last write that completed
    events: int
    trades_sent: int
    bytes_sent: int

    def stop(self, reason: WalletdError) -> None: ...

    def reap(self) -> None: ...


class StreamRegistry:
    """Open streams by id. A stream is in here exactly while its handler runs."""

    def __init__(self) -> None:
        self._streams: dict[str, Stoppable] = {}
        self._empty = asyncio.Event()
        self._empty.set()

    def __len__(self) -> int:
        return len(self._streams)

    def __iter__(self) -> Iterator[Stoppable]:
        return iter(list(self._streams.values()))

    def add(self, stream: Stoppable) -> None:
        self._streams[stream.stream_id] = stream
        self._empty.clear()

    def discard(self, stream: Stoppable) -> None:
        self._streams.pop(stream.stream_id, None)
        if not self._streams:
            self._empty.set()

    def stop_all(self, reason: WalletdError) -> None:
        """Ask every open stream to end with `reason` as its final `error` event."""
        for stream in self:
            stream.stop(reason)

    async def wait_empty(self, within_s: float) -> bool:
        """Wait until no stream is open; False if `within_s` seconds passed first."""
        try:
            async with asyncio.timeout(within_s):
                await self._empty.wait()
        except TimeoutError:
            return False
        return True
