"""The SSE codec: exact bytes out, line breaks refused; WHATWG parsing in, strict for tests."""

from __future__ import annotations

import orjson
import pytest

from tests.sse_client import parse
from walletd.stream import sse


def test_event_frame_is_one_data_line_without_id():
    frame = sse.event_frame("progress", {"message": "line one\nline two", "n": 1})
    assert frame == b'event: progress\ndata: {"message":"line one\\nline two","n":1}\n\n'


def test_trades_frame_carries_the_last_signature_and_valid_json():
    trades = b",".join(orjson.dumps({"signature": s}) for s in ("a", "b"))
    frame = sse.trades_frame(memoryview(trades), "b", batch=3, total=7)
    assert frame.startswith(b"id: b\nevent: trades\n")
    event = parse(sse.retry_frame(1000) + frame).events[0]
    assert event.id == "b"
    assert event.data == {
        "trades": [{"signature": "a"}, {"signature": "b"}],
        "batch": 3,
        "total": 7,
    }


def test_retry_frame():
    assert sse.retry_frame(3000) == b"retry: 3000\n\n"
    assert parse(sse.retry_frame(3000)).retry == 3000


# The encoder refuses line breaks in what it writes (SPEC: an `id:` is upstream data)


@pytest.mark.parametrize("bad", ["a\r\nb", "a\nb", "a\rb"])
def test_encoding_an_event_name_or_id_with_a_line_break_raises(bad):
    with pytest.raises(sse.FrameError):
        sse.event_frame(bad, {})
    with pytest.raises(sse.FrameError):
        sse.trades_prefix(bad)
    with pytest.raises(sse.FrameError):
        sse.trades_frame(b"{}", "sig" + bad + "event: error", batch=1, total=1)


def test_line_breaks_inside_data_are_escaped_by_json_not_refused():
    frame = sse.event_frame("progress", {"message": "a\r\nb"})
    assert sse.parse(frame, strict=True)[0].json() == {"message": "a\r\nb"}


# The parser: WHATWG rules, any line ending, chunks split anywhere


def feed_bytewise(parser: sse.Parser, body: bytes) -> list[sse.Event]:
    return [event for i in range(len(body)) for event in parser.feed(body[i : i + 1])]


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_parser_reads_any_line_ending_split_anywhere(eol):
    text = (
        ': a comment\nretry: 1500\n\nevent: trades\nid: abc\ndata: {"a":\ndata:1}\n\n'
        "data: plain é\n\nevent: complete\ndata: {}\n\nevent: cut\ndata: {"
    ).replace("\n", eol)
    parser = sse.Parser()
    events = feed_bytewise(parser, b"\xef\xbb\xbf" + text.encode())
    assert events == [
        sse.Event("trades", '{"a":\n1}', "abc"),
        sse.Event("message", "plain é", None),
        sse.Event("complete", "{}", None),
    ]
    assert parser.retry_ms == 1500
    assert parser.last_event_id == "abc"  # kept across events, as an EventSource does
    assert parser.close() is False  # the cut event is dropped, and said to be
    whole = sse.Parser()
    assert whole.feed(text.encode()) == events  # and in one chunk


def test_parser_reads_what_the_encoder_writes_strictly():
    body = (
        sse.retry_frame(3000)
        + sse.event_frame("connected", {"wallet": "w"})
        + sse.trades_frame(b'{"signature":"s1"},{"signature":"s2"}', "s2", batch=1, total=2)
    )
    parser = sse.Parser(strict=True)
    events = feed_bytewise(parser, body)
    assert parser.close() is True
    assert parser.retry_ms == 3000
    assert [(e.name, e.id) for e in events] == [("connected", None), ("trades", "s2")]
    assert events[1].json()["trades"] == [{"signature": "s1"}, {"signature": "s2"}]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"event: a\r\ndata: {}\r\n\r\n", id="CR"),
        pytest.param(b": keep-alive\n\n", id="comment"),
        pytest.param(b"event: a\ncolour: red\ndata: {}\n\n", id="unknown field"),
        pytest.param(b"event: a\ndata: {}\ndata: {}\n\n", id="two data lines"),
        pytest.param(b"event: a\ndata: not json\n\n", id="data not JSON"),
        pytest.param(b"event: a\ndata: [1]\n\n", id="data not an object"),
        pytest.param(b"event: a\ndata:{}\n\n", id="no space after the colon"),
        pytest.param(b"data: {}\n\n", id="no event name"),
        pytest.param(b"event: a\n\n", id="no data"),
        pytest.param(b"event: a\ndata: {}\n", id="no final blank line"),
        pytest.param(b"event: a\ndata: {}\n\nretry: 10\n\n", id="retry after an event"),
        pytest.param(b"event: a\ndata: {}\n\n\n", id="empty event"),
        pytest.param(b'event: a\ndata: {"\xff": 1}\n\n', id="invalid UTF-8"),
    ],
)
def test_strict_parser_refuses_what_walletd_never_writes(body):
    with pytest.raises(sse.ParseError):
        sse.parse(body, strict=True)
    sse.parse(body)  # a browser's rules: no error, whatever it makes of it
