"""A TCP proxy between a client and walletd that a test can cut: every connection dropped
at once, new ones refused for a while, or one response cut just before a given event.

It forwards bytes as they come, both ways, on 127.0.0.1. A cut closes both sides without
a word, as a lost network path or a crashed load balancer would: the client sees its
stream end mid-way and has only its last event id to resume from.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class Proxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.accepted = 0  # connections accepted and forwarded, over the proxy's life
        self.refusing = False
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        # (marker, occurrences to pass, hold there until drop_all)
        self._cut_before: tuple[bytes, int, bool] | None = None
        self.cut_done = asyncio.Event()
        self._released = asyncio.Event()  # drop_all() ends a held cut

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.drop_all()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def drop_all(self) -> int:
        """Close every open connection, both sides; how many there were."""
        self._released.set()
        dropped = len(self._open)
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()
        return dropped

    def cut_before(self, marker: bytes, *, skip: int = 0, hold: bool = False) -> None:
        """Once: in the next responses, cut the connection just before the (skip+1)-th
        `marker` of one response (sent up to there, nothing of it after).

        `hold`: forward nothing more from there and keep the connection open until
        drop_all(), so a test can first see the client take everything before the cut.
        A reset right after the last bytes may overtake them: the client would then
        start over instead of resuming."""
        self._cut_before = (marker, skip, hold)
        self.cut_done.clear()
        self._released.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self.accepted += 1
        self._open.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer, cutting=False),
            self._pipe(up_reader, writer, cutting=True),
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, cutting: bool
    ) -> None:
        seen = 0  # markers passed in this response
        tail = b""  # the end of what was forwarded, for a marker split across reads
        try:
            while chunk := await reader.read(65536):
                if cutting and self._cut_before is not None:
                    marker, skip, hold = self._cut_before
                    window = tail + chunk
                    start = 0
                    while (at := window.find(marker, start)) >= 0:
                        if seen == skip:
                            writer.write(window[len(tail) : at] if at >= len(tail) else b"")
                            await writer.drain()
                            self._cut_before = None
                            self.cut_done.set()
                            if hold:
                                await self._released.wait()
                            self.drop_all()
                            return
                        seen += 1
                        start = at + len(marker)
                    tail = window[-(len(marker) - 1) :] if len(marker) > 1 else b""
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._open.discard(writer)
            writer.transport.abort()


@contextlib.asynccontextmanager
async def proxy_to(upstream_port: int) -> AsyncIterator[Proxy]:
    proxy = Proxy(upstream_port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
