"""Server-Sent Events codec: events to bytes (the server) and bytes to events (clients).

Pure: no aiohttp here, so the CLI and the tests parse with the very rules the server
writes by. Payloads are orjson output, which never contains a raw newline, so every
event is one `data:` line. Trades arrive already encoded, so each is serialised once
per history.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

import orjson


class FrameError(ValueError):
    """A field walletd was about to write would break the event framing (CR or LF).

    Never escaped or repaired: a line break in an `id:` or an event name would let its
    text (an upstream signature, say) inject fields or events into the stream.
    """


class ParseError(ValueError):
    """A strict parser met bytes walletd never writes."""


_LF, _CR = ord("\n"), ord("\r")


def _checked(field: str, value: bytes) -> bytes:
    # Bytes as ints: `b"\n" in value` first tries the needle as an int and raises (and
    # catches) a TypeError, about 2,000 instructions a test.
    if _LF in value or _CR in value:
        raise FrameError(f"line break in SSE {field}: {value[:80]!r}")
    return value


def encode_json(value: Any) -> bytes:
    return orjson.dumps(value)


def retry_frame(retry_ms: int) -> bytes:
    """The reconnection delay a browser's EventSource should use."""
    return b"retry: %d\n\n" % retry_ms  # %d of an int: never a line break


def event_frame(event: str, data: Any, *, event_id: str | None = None) -> bytes:
    """An event; without `id:` but for a follow stream's `caught_up` (SPEC §1)."""
    if event_id is None:
        return b"".join((_event_head(event), orjson.dumps(data), b"\n\n"))
    id_line = b"id: %s\n" % _checked("id", event_id.encode())
    return b"".join((id_line, _event_head(event), orjson.dumps(data), b"\n\n"))


@functools.lru_cache(maxsize=32)  # event names are walletd's own: a handful
def _event_head(event: str) -> bytes:
    """An event's bytes before its data, checked once per name."""
    return b"event: %s\ndata: " % _checked("event", event.encode())


def trades_frame(
    trades_json: bytes | memoryview, last_signature: str, batch: int, total: int
) -> bytes:
    """A `trades` event whose `id:` is the last trade's signature: the resume cursor.

    `trades_json` is the batch's trade objects, already encoded and comma-separated
    (orjson output: no raw line breaks).
    """
    return b"".join((trades_prefix(last_signature), trades_json, trades_suffix(batch, total)))


def trades_prefix(last_signature: str) -> bytes:
    """The bytes of a `trades` event before its trade objects; FrameError on a line
    break in the signature (checked once per frame, not per trade)."""
    signature = _checked("id", last_signature.encode())
    return b'id: %s\nevent: trades\ndata: {"trades":[' % signature


def trades_suffix(batch: int, total: int) -> bytes:
    """The bytes of a `trades` event after its trade objects."""
    return b'],"batch":%d,"total":%d}\n\n' % (batch, total)


# --- parsing -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """One dispatched event. `id` is this event's own `id:` field, if it had one (the
    parser's `last_event_id` is the cursor an EventSource would keep)."""

    name: str
    data: str
    id: str | None = None

    def json(self) -> Any:
        return orjson.loads(self.data)


_EOL = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"
_FIELDS = frozenset({"event", "data", "id", "retry"})


class Parser:
    """Incremental SSE parser by the WHATWG EventSource rules: bytes in, whole events out.

    Chunk boundaries may fall anywhere (inside a UTF-8 character or a CRLF). An event
    cut off by the end of the stream is never returned: `close()` says whether one was.

    `strict=True` is for tests: it raises ParseError on anything walletd never writes,
    rather than skipping it as a browser would: a CR, a comment, a line that is not
    `field: value`, an unknown or repeated field, an event without a name or with other
    than exactly one `data:` line of a JSON object, a `retry:` after the first event,
    invalid UTF-8, and (at close) bytes after the last blank line.
    """

    def __init__(self, *, strict: bool = False) -> None:
        self.strict = strict
        self.retry_ms: int | None = None  # the reconnection time last set by `retry:`
        self.last_event_id = ""  # WHATWG's last event ID buffer: survives dispatches
        self._pending = bytearray()  # an incomplete line
        self._started = False  # the BOM check is done
        self._skip_lf = False  # the last chunk ended in CR: a following LF completes it
        self._name = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._fields: set[str] = set()  # of the current block, for strict checks
        self._events = 0

    def feed(self, chunk: bytes) -> list[Event]:
        """The events completed by `chunk`, in order."""
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if self.strict and b"\r" in chunk:
            raise ParseError(f"CR in the stream near {chunk[:80]!r}")
        buffer = self._pending
        buffer += chunk  # in place: a long line fed in small chunks is not copied each time
        if not self._started:
            if len(buffer) < len(_BOM) and _BOM.startswith(buffer):
                return []
            self._started = True
            if buffer.startswith(_BOM):
                del buffer[: len(_BOM)]
        if b"\n" not in chunk and b"\r" not in chunk:
            return []  # no line ends here
        lines: list[bytes | bytearray]
        if b"\r" in buffer:
            lines = list(_EOL.split(buffer))
            self._skip_lf = buffer.endswith(b"\r")
        else:
            lines = list(buffer.split(b"\n"))
        self._pending = bytearray(lines.pop())
        events: list[Event] = []
        for line in lines:
            if line:
                self._line(line)
            elif (event := self._dispatch()) is not None:
                events.append(event)
        return events

    def close(self) -> bool:
        """End of stream: True when it ended between events (a partial one is dropped).

        Strict: ParseError unless it did, so a missing final blank line fails loudly.
        """
        clean = not (self._pending or self._fields)
        if self.strict and not clean:
            raise ParseError(f"stream ends mid-event: {self._pending[-80:]!r}")
        self._pending, self._name, self._data, self._id = bytearray(), "", [], None
        self._fields = set()
        return clean

    def _line(self, raw: bytes | bytearray) -> None:
        try:
            line = raw.decode("utf-8", "strict" if self.strict else "replace")
        except UnicodeDecodeError as exc:
            raise ParseError(f"invalid UTF-8 in {raw[:80]!r}") from exc
        field, colon, value = line.partition(":")
        if self.strict:
            self._check_line(line, field, colon, value)
        if not field:
            return  # a comment
        value = value.removeprefix(" ")
        self._fields.add(field)
        if field == "event":
            self._name = value
        elif field == "data":
            self._data.append(value)
        elif field == "id" and "\0" not in value:
            self._id = self.last_event_id = value
        elif field == "retry" and value.isascii() and value.isdigit():
            self.retry_ms = int(value)

    def _dispatch(self) -> Event | None:
        if self.strict:
            self._check_block()
        event = None
        if self._data:
            event = Event(self._name or "message", "\n".join(self._data), self._id)
            self._events += 1
        self._name, self._data, self._id = "", [], None
        self._fields = set()
        return event

    def _check_line(self, line: str, field: str, colon: str, value: str) -> None:
        if not colon or not value.startswith(" "):
            raise ParseError(f"not a `field: value` line: {line[:80]!r}")
        if field not in _FIELDS:
            raise ParseError(f"unknown field {field!r}" if field else f"comment {line[:80]!r}")
        if field in self._fields:
            raise ParseError(f"repeated field {field!r}: {line[:80]!r}")
        if field == "retry":
            if not (value[1:].isascii() and value[1:].isdigit()):
                raise ParseError(f"retry is not a number: {line[:80]!r}")
            if self._events or self.retry_ms is not None:
                raise ParseError("retry after the stream's start, or twice")

    def _check_block(self) -> None:
        if not self._fields:
            raise ParseError("an empty event (two blank lines in a row)")
        if self._fields == {"retry"}:
            return
        if "event" not in self._fields or not self._name:
            raise ParseError(f"an event without a name: {self._fields}")
        if "data" not in self._fields:
            raise ParseError(f"event {self._name!r} without data")
        try:
            value = orjson.loads(self._data[0])
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"event {self._name!r}: data is not JSON") from exc
        if not isinstance(value, dict):
            raise ParseError(f"event {self._name!r}: data is not a JSON object")


def parse(body: bytes, *, strict: bool = False) -> list[Event]:
    """Every whole event of a complete stream body (see Parser)."""
    parser = Parser(strict=strict)
    events = parser.feed(body)
    parser.close()
    return events
