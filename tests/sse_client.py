"""Helpers to read walletd streams in tests, parsing through walletd's own SSE codec.

Parsing is `walletd.stream.sse.Parser(strict=True)`: only the fields walletd writes,
exactly one `data:` line of a JSON object per event, LF line endings, a final blank
line. On top, the protocol's own rules: known event names only, `id:` only on
`trades`, `retry` once, first. Anything else fails the test that reads it.
"""

from __future__ import annotations

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
    assert (event.id is not None) == (event.name == "trades"), f"id on {event.name}: {event.id}"
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
