"""A strict parser of walletd's SSE output, and helpers to read streams in tests.

Strict means: only the fields walletd writes (`retry`, `id`, `event`, `data`), exactly
one `data:` line of JSON per event, `id:` only on `trades`, LF line endings, and a
final blank line. Anything else fails the test that reads it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp

EVENT_NAMES = {"connected", "progress", "trades", "heartbeat", "complete", "error"}


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


def parse_block(block: str) -> tuple[int | None, Event | None]:
    """One event block (without its terminating blank line) -> (retry, event)."""
    retry, name, data, event_id = None, None, None, None
    for line in block.split("\n"):
        assert "\r" not in line, f"CR in SSE line {line!r}"
        field, sep, value = line.partition(": ")
        assert sep, f"malformed SSE line {line!r}"
        if field == "retry":
            assert retry is None and value.isdigit(), line
            retry = int(value)
        elif field == "event":
            assert name is None and value in EVENT_NAMES, line
            name = value
        elif field == "data":
            assert data is None, f"more than one data line in {block!r}"
            data = json.loads(value)
            assert isinstance(data, dict), line
        elif field == "id":
            assert event_id is None and value, line
            event_id = value
        else:
            raise AssertionError(f"unexpected SSE field {field!r}")
    if name is None:
        assert data is None and event_id is None and retry is not None, block
        return retry, None
    assert data is not None, f"event {name} without data"
    assert (event_id is not None) == (name == "trades"), f"id on {name}: {event_id}"
    return retry, Event(name, data, event_id)


def parse(body: bytes) -> Stream:
    """A whole stream body -> Stream. The body must end with a complete event."""
    text = body.decode("utf-8")
    assert text.endswith("\n\n") or text == "", f"stream ends mid-event: {text[-80:]!r}"
    retry, events = None, []
    for block in text[:-2].split("\n\n") if text else []:
        block_retry, event = parse_block(block)
        if block_retry is not None:
            assert retry is None and not events, "retry must open the stream, once"
            retry = block_retry
        if event is not None:
            events.append(event)
    return Stream(retry, events)


async def read_events(resp: aiohttp.ClientResponse, count: int | None = None) -> list[Event]:
    """Read events off a live response as they arrive; stop after `count` events."""
    events: list[Event] = []
    buffer = b""
    async for chunk in resp.content.iter_any():
        buffer += chunk
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            _, event = parse_block(block.decode())
            if event is not None:
                events.append(event)
                if count is not None and len(events) >= count:
                    return events
    assert buffer == b"", f"stream ended mid-event: {buffer[-80:]!r}"
    return events
