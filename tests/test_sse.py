"""The SSE encoder: exact bytes, one data line, ids only on trades."""

from __future__ import annotations

import orjson
from sse_client import parse

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
