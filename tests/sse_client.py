"""Helpers to read walletd streams in tests, parsing through walletd's own SSE codec.

Parsing is `walletd.stream.sse.Parser(strict=True)`: only the fields walletd writes,
exactly one `data:` line of a JSON object per event, LF line endings, a final blank
line. On top, the protocol's own rules: known event names only, `id:` on every
`trades` and on nothing else but a follow stream's `caught_up`, `retry` once, first.
Anything else fails the test that reads it.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from typing import Any

import aiohttp

from walletd.stream import sse
from walletd.stream.events import EVENT_TYPES

EVENT_NAMES = set(EVENT_TYPES)


@dataclass
class Event:
    name: str
    data: dict[str, Any]
    id: str | None = None


@dataclass
class Stream:
    retry: int | None
    events: list[Event]

    def named(self, name: str) -> list[Event]:
        return [e for e in self.events if e.name == name]

    @property
    def trades(self) -> list[dict[str, Any]]:
        return [t for e in self.named("trades") for t in e.data["trades"]]

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.events]


def checked(event: sse.Event) -> Event:
    """A parsed event, held to walletd's protocol (SPEC §1)."""
    assert event.name in EVENT_NAMES, f"unknown event {event.name!r}"
    if event.name != "caught_up":
        assert (event.id is not None) == (event.name == "trades"), f"id on {event.name}"
    assert event.id != "", "empty id"
    return Event(event.name, event.json(), event.id)


def parse(body: bytes) -> Stream:
    """A whole stream body -> Stream. The body must end with a complete event."""
    parser = sse.Parser(strict=True)
    events = [checked(event) for event in parser.feed(body)]
    parser.close()
    return Stream(parser.retry_ms, events)


async def read_events(resp: aiohttp.ClientResponse, count: int | None = None) -> list[Event]:
    """Read events off a live response as they arrive; stop after `count` events."""
    parser = sse.Parser(strict=True)
    events: list[Event] = []
    async for chunk in resp.content.iter_any():
        for event in parser.feed(chunk):
            events.append(checked(event))
            if count is not None and len(events) >= count:
                return events
    parser.close()
    return events


class EventReader:
    """Events of a live response, read as they arrive, across calls."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp
        self.parser = sse.Parser(strict=True)
        self.events: list[Event] = []  # every event read so far
        self._ready: list[Event] = []

    async def next(self) -> Event:
        """The next event; AssertionError if the stream ends first."""
        while not self._ready:
            chunk = await self.resp.content.readany()
            assert chunk, "the stream ended"
            self._ready.extend(checked(event) for event in self.parser.feed(chunk))
        event = self._ready.pop(0)
        self.events.append(event)
        return event

    async def until(self, name: str) -> list[Event]:
        """Events up to and including the next one named `name`."""
        out = [await self.next()]
        while out[-1].name != name:
            out.append(await self.next())
        return out

    async def rest(self) -> list[Event]:
        """Every event until the server closes the stream."""
        out = list(self._ready)
        self._ready.clear()
        async for chunk in self.resp.content.iter_any():
            out.extend(checked(event) for event in self.parser.feed(chunk))
        self.parser.close()
        self.events.extend(out)
        return out


async def open_slow_reader(
    port: int, path: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw HTTP/1.1 GET of `path` with a 4 KB receive buffer: a client that reads only
    when the test does, so the server's buffers fill as soon as it stops."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    return reader, writer


def dechunk(body: bytes, *, complete: bool = True) -> bytes:
    """The payload of an HTTP/1.1 chunked body; with `complete`, asserts it ends with the
    last chunk, else it is the payload of the whole chunks read so far."""
    out, rest = bytearray(), body
    while True:
        size_line, crlf, after = rest.partition(b"\r\n")
        if not crlf and not complete:
            return bytes(out)
        size = int(size_line, 16)
        if size == 0:
            return bytes(out)
        if len(after) < size + 2 and not complete:
            return bytes(out)
        out += after[:size]
        assert after[size : size + 2] == b"\r\n", "chunked body cut short"
        rest = after[size + 2 :]
