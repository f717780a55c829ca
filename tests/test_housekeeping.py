"""The background task: stale streams reaped and their slots freed, system sampling,
and a job that fails never stops the others."""

from __future__ import annotations

import asyncio
import logging
import socket

import aiohttp
import psutil
import pytest
from aiohttp import web

from tests.fakes import ListSource, demo_pages
from tests.sse_client import read_events
from tests.support import WALLET
from tests.waiting import eventually
from walletd.appkeys import HISTORY, METRICS, STREAMS
from walletd.observability.system_metrics import tcp_connections
from walletd.upstream.demo import LARGE_DEMO_WALLET

STREAM = "/v4/wallet/{}/stream"


async def open_unread_stream(port: int, path: str) -> socket.socket:
    """A client that sends its request and then never reads: a tiny receive buffer, so
    the server's writes block soon."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
    await asyncio.get_running_loop().sock_sendall(sock, request.encode())
    return sock


def reaped(app) -> int:
    return app[METRICS].streams_finished.get("reaped", 0)


async def test_a_client_that_stops_reading_is_reaped_and_its_slot_freed(serve):
    client = await serve(STALE_STREAM_TIMEOUT=0.5, RATE_LIMIT_STREAMING_CONNECTIONS=1)
    app = client.server.app
    await (await client.get(STREAM.format(LARGE_DEMO_WALLET), params={"limit": 1})).read()
    sock = await open_unread_stream(client.port, STREAM.format(LARGE_DEMO_WALLET))
    try:
        await eventually(lambda: len(app[STREAMS]) == 1)
        refused = await client.get(STREAM.format(WALLET))
        assert refused.status == 429  # the stuck stream holds the only slot
        await eventually(lambda: len(app[STREAMS]) == 0)
        assert reaped(app) == 1
        again = await client.get(STREAM.format(WALLET))
        assert again.status == 200  # the slot is free again
        await again.read()
    finally:
        sock.close()


async def test_a_stream_with_nothing_to_write_is_reaped(serve):
    pages = await demo_pages(WALLET, page_size=30)
    source = ListSource.from_pages(pages, gates={1: asyncio.Event()})
    client = await serve(source=source, STALE_STREAM_TIMEOUT=0.5, SSE_KEEPALIVE_INTERVAL=60)
    resp = await client.get(STREAM.format(WALLET))
    assert [e.name for e in await read_events(resp, 3)] == ["connected", "progress", "trades"]
    with pytest.raises(aiohttp.ClientPayloadError):  # cut: no event for a client lost
        await resp.read()
    await eventually(lambda: reaped(client.server.app) == 1)
    assert len(client.server.app[STREAMS]) == 0


async def test_streams_that_write_are_never_reaped(serve):
    pages = await demo_pages(WALLET, page_size=30)
    source = ListSource.from_pages(pages, gates={1: asyncio.Event()})
    client = await serve(source=source, STALE_STREAM_TIMEOUT=0.5, SSE_KEEPALIVE_INTERVAL=0.1)
    resp = await client.get(STREAM.format(WALLET))
    events = await read_events(resp, 15)  # heartbeats for well over the timeout
    assert sum(e.name == "heartbeat" for e in events) >= 10
    assert reaped(client.server.app) == 0
    resp.close()


async def test_the_sampler_publishes_sane_process_figures(serve):
    client = await serve(SYSTEM_METRICS_INTERVAL=0.1)
    metrics = client.server.app[METRICS]
    await eventually(lambda: metrics.rss_bytes._value.get() > 0)
    me = psutil.Process()
    rss = metrics.rss_bytes._value.get()
    assert 0.5 * me.memory_info().rss < rss < 2 * me.memory_info().rss  # the same process
    assert 3 <= metrics.open_fds._value.get() <= me.num_fds() + 50
    assert metrics.open_connections._value.get() >= 1
    assert 0 <= metrics.cpu_percent._value.get() <= 100 * (psutil.cpu_count() or 1)


async def test_a_failing_job_is_logged_and_the_others_go_on(serve, caplog, monkeypatch):
    pages = await demo_pages(WALLET, page_size=30)
    source = ListSource.from_pages(pages, gates={1: asyncio.Event()})
    client = await serve(source=source, STALE_STREAM_TIMEOUT=0.5, SSE_KEEPALIVE_INTERVAL=60)
    app = client.server.app

    def broken() -> None:
        raise RuntimeError("sweep broke")

    monkeypatch.setattr(app[HISTORY], "sweep", broken)  # fails on every tick from now on
    caplog.set_level(logging.ERROR, "walletd.ops.housekeeping")
    resp = await client.get(STREAM.format(WALLET))
    await read_events(resp, 3)
    await eventually(lambda: reaped(app) == 1)  # the reaper ran on, tick after tick
    failures = [r for r in caplog.records if r.getMessage() == "housekeeping_failed"]
    assert failures and all(r.__dict__["job"] == "sweep_history" for r in failures)
    resp.close()


async def test_tcp_connections_counts_what_psutil_counts(aiohttp_server):
    """The open-connections gauge's count agrees with psutil's net_connections: the
    listener and both ends of every connection."""
    server = await aiohttp_server(web.Application())
    opened = [await asyncio.open_connection(server.host, server.port) for _ in range(3)]

    def both_seven() -> bool:
        return tcp_connections() == len(psutil.Process().net_connections("tcp")) == 7

    try:
        await eventually(lambda: asyncio.to_thread(both_seven), what="7 sockets counted")
    finally:
        for _, writer in opened:
            writer.close()
