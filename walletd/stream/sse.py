"""Server-Sent Events framing: pure functions from events to bytes (no aiohttp here).

Payloads are orjson output, which never contains a raw newline, so every event is one
`data:` line. Trades arrive already encoded, so each is serialised once per history.
"""

from __future__ import annotations

from typing import Any

import orjson


def encode_json(value: Any) -> bytes:
    return orjson.dumps(value)


def retry_frame(retry_ms: int) -> bytes:
    """The reconnection delay a browser's EventSource should use."""
    return b"retry: %d\n\n" % retry_ms


def event_frame(event: str, data: Any) -> bytes:
    """An event without `id:`: only `trades` events carry ids (SPEC §1)."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def trades_frame(
    trades_json: bytes | memoryview, last_signature: str, batch: int, total: int
) -> bytes:
    """A `trades` event whose `id:` is the last trade's signature: the resume cursor.

    `trades_json` is the batch's trade objects, already encoded and comma-separated.
    """
    return b"".join((trades_prefix(last_signature), trades_json, trades_suffix(batch, total)))


def trades_prefix(last_signature: str) -> bytes:
    """The bytes of a `trades` event before its trade objects."""
    return b'id: %s\nevent: trades\ndata: {"trades":[' % last_signature.encode()


def trades_suffix(batch: int, total: int) -> bytes:
    """The bytes of a `trades` event after its trade objects."""
    return b'],"batch":%d,"total":%d}\n\n' % (batch, total)
