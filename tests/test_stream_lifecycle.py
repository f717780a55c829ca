"""Heartbeats, STREAM_TIMEOUT, failures, disconnects and shutdown of live streams."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from tests.fakes import ListSource, demo_pages
from tests.sse_client import parse, read_events
from tests.support import WALLET
from walletd.appkeys import HISTORY, STREAMS
from walletd.errors import DataFetchError, ServiceUnavailable
from walletd.stream.connection import WalletStream

STREAM = f"/v4/wallet/{WALLET}/stream"


@pytest.fixture
async def pages():
    return await demo_pages(WALLET, page_size=20)


def stream_tasks() -> list[asyncio.Task]:
    """Tasks still running walletd's stream code."""
    return [
        t
        for t in asyncio.all_tasks()
        if any(
            f.f_code.co_filename.endswith(("stream/handler.py", "stream/connection.py"))
            for f in t.get_stack()
        )
    ]


async def test_heartbeats_keep_a_slow_stream_alive(serve, pages):
    gate = asyncio.Event()
    source = ListSource.from_pages(pages, gates={1: gate})
    client = await serve(source=source, SSE_KEEPALIVE_INTERVAL=0.05)
    async with client.get(STREAM) as resp:
        events: list[Any] = []
        while sum(e.name == "heartbeat" for e in events) < 3:
            events += await read_events(resp, 1)
        assert events[0].name == "connected"
        assert "trades" in [e.name for e in events]
        beats = [e for e in events if e.name == "heartbeat"]
        assert all(
            isinstance(b.data["timestamp"], int) and set(b.data) == {"timestamp"} for b in beats
        )
        gate.set()
        rest = await read_events(resp)
    assert rest[-1].name == "complete"
    assert rest[-1].data["signatures_scanned"] == sum(len(p.transactions) for p in pages)


async def test_stream_timeout_ends_with_resume_id(serve, pages):
    source = ListSource.from_pages(pages, gates={1: asyncio.Event()})  # never opens
    client = await serve(source=source, SSE_MAX_STREAM_DURATION=0.3, SSE_KEEPALIVE_INTERVAL=0.05)
    stream = parse(await (await client.get(STREAM)).read())
    error = stream.events[-1]
    assert error.name == "error"
    assert error.data["code"] == "STREAM_TIMEOUT"
    assert error.data["last_event_id"] == stream.named("trades")[-1].id
    assert "heartbeat" in stream.names


async def test_stream_timeout_before_any_trade_resumes_from_request_cursor(serve, pages):
    cursor = pages[0].transactions[3]["signature"]
    source = ListSource.from_pages(pages, gates={0: asyncio.Event()})
    client = await serve(source=source, SSE_MAX_STREAM_DURATION=0.2, SSE_KEEPALIVE_INTERVAL=0.05)
    stream = parse(await (await client.get(STREAM, params={"before": cursor})).read())
    assert stream.events[-1].data["code"] == "STREAM_TIMEOUT"
    assert stream.events[-1].data["last_event_id"] == cursor


async def test_upstream_failure_mid_stream_is_a_resumable_error_event(serve, pages):
    source = ListSource.from_pages(pages, fail_at={2: DataFetchError("HTTP 502 from upstream")})
    client = await serve(source=source)
    resp = await client.get(STREAM)
    stream = parse(await resp.read())
    error = stream.events[-1]
    assert error.data["code"] == "DATA_FETCH_ERROR"
    assert error.data["last_event_id"] == stream.named("trades")[-1].id
    assert error.data["stream_id"] == resp.headers["X-Stream-ID"]
    assert "502" not in error.data["error"]
    # A failure is never cached: the next stream asks the source again.
    await (await client.get(STREAM)).read()
    assert len(source.calls) == 2


async def test_retry_after_reaches_the_error_event(serve, pages):
    source = ListSource.from_pages(
        pages, fail_at={0: ServiceUnavailable("circuit open", retry_after=17)}
    )
    client = await serve(source=source)
    stream = parse(await (await client.get(STREAM)).read())
    assert stream.events[-1].data["code"] == "SERVICE_UNAVAILABLE"
    assert stream.events[-1].data["retry_after"] == 17
    assert stream.events[-1].data["last_event_id"] is None


async def test_unexpected_exception_leaks_nothing(serve, pages):
    secret = "https://upstream.example/?api-key=wd_SECRETSECRETSECRETSECRETSECRET12"
    source = ListSource.from_pages(pages, fail_at={1: RuntimeError(secret)})
    client = await serve(source=source)
    body = await (await client.get(STREAM)).read()
    stream = parse(body)
    assert stream.events[-1].data["code"] == "INTERNAL_ERROR"
    assert stream.events[-1].data["error"] == "Internal error"
    assert b"SECRET" not in body and b"upstream" not in body and b"Traceback" not in body


async def test_disconnect_leaves_nothing_behind(serve, pages):
    gate = asyncio.Event()
    source = ListSource.from_pages(pages, gates={1: gate})
    client = await serve(source=source)
    app = client.server.app
    resp = await client.get(STREAM)
    events = await read_events(resp, 3)
    assert events[-1].name == "trades"
    await source.waiting.wait()
    assert len(app[STREAMS]) == 1
    resp.close()  # the client goes away while the stream waits for the source
    assert await app[STREAMS].wait_empty(5)
    assert stream_tasks() == []
    gate.set()  # the shared fetch finishes for nobody; the cache then drops it
    await app[HISTORY].close()
    assert len(app[HISTORY]) == 0


async def test_shutdown_sends_server_shutdown_with_resume_id(serve, pages):
    source = ListSource.from_pages(pages, gates={1: asyncio.Event()})
    client = await serve(source=source, SHUTDOWN_GRACE=5)
    async with client.get(STREAM) as resp:
        events = await read_events(resp, 3)
        closing = asyncio.create_task(client.server.close())
        events += await read_events(resp)
    await closing
    error = events[-1]
    assert error.name == "error"
    assert error.data["code"] == "SERVER_SHUTDOWN"
    assert error.data["last_event_id"] == [e for e in events if e.name == "trades"][-1].id


async def test_new_streams_are_refused_while_draining(serve):
    from walletd.appkeys import LIFECYCLE
    from walletd.ops.lifecycle import Phase

    client = await serve()
    client.server.app[LIFECYCLE].phase = Phase.DRAINING
    resp = await client.get(STREAM)
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "1"
    assert (await resp.json())["code"] == "SERVICE_UNAVAILABLE"
    ready = await client.get("/ready")
    assert ready.status == 503


async def test_concurrent_streams_of_one_wallet_share_one_fetch(serve, pages):
    gate = asyncio.Event()
    source = ListSource.from_pages(pages, gates={0: gate})
    client = await serve(source=source)
    responses = [await client.get(STREAM) for _ in range(5)]
    await source.waiting.wait()
    gate.set()
    streams = [parse(await r.read()) for r in responses]
    assert len(source.calls) == 1
    assert source.served == len(pages)
    assert all(s.trades == streams[0].trades and s.trades for s in streams)


def trade_count(page) -> int:
    from walletd.upstream.helius.reader import parse_transaction

    return sum(parse_transaction(tx, WALLET) is not None for tx in page.transactions)


async def test_limit_at_a_page_end_completes_even_if_the_next_page_fails(serve, pages):
    source = ListSource.from_pages(pages, fail_at={2: DataFetchError("502")})
    client = await serve(source=source)
    limit = trade_count(pages[0]) + trade_count(pages[1])
    stream = parse(await (await client.get(STREAM, params={"limit": str(limit)})).read())
    assert stream.events[-1].name == "complete"
    assert stream.events[-1].data["trades_found"] == limit
    assert stream.events[-1].data["truncated"] is True  # unknown counts as truncated


async def test_truncated_looks_past_pages_without_trades(serve, pages):
    no_trades = [tx for p in pages for tx in p.transactions if tx["transactionError"] is not None]
    assert no_trades
    source = ListSource([pages[0].transactions, no_trades[:1], no_trades[1:2] or no_trades[:1]])
    client = await serve(source=source, CACHE_TTL=0)
    limit = trade_count(pages[0])
    stream = parse(await (await client.get(STREAM, params={"limit": str(limit)})).read())
    assert stream.events[-1].data["truncated"] is False


async def test_ready_reports_an_open_upstream_circuit(serve):
    from walletd.appkeys import BREAKER

    client = await serve()
    breaker = client.server.app[BREAKER]
    for _ in range(3):
        with pytest.raises(RuntimeError):
            async with breaker.call():
                raise RuntimeError("upstream down")
    resp = await client.get("/ready")
    assert resp.status == 200  # degraded, still serving: not out of the load balancer
    assert await resp.json() == {"status": "degraded", "reasons": ["upstream_circuit_open"]}


async def test_a_finished_stream_is_freed_without_the_cycle_collector(serve, pages):
    # No reference cycle holds a stream once its handler returns (its alarm calls back
    # into it): reference counting frees it, and each new stream does not add its
    # request, response and task to what the garbage collector has to find.
    client = await serve(source=ListSource.from_pages(pages))
    app = client.server.app
    gc.collect()
    gc.disable()
    try:
        stream = parse(await (await client.get(STREAM)).read())
        assert stream.events[-1].name == "complete"
        assert await app[STREAMS].wait_empty(5)
        assert stream_tasks() == []
        assert [o for o in gc.get_objects() if isinstance(o, WalletStream)] == []
    finally:
        gc.enable()
