"""The `walletd` command as a real process: serve, drain on SIGTERM, check-config."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from datetime import datetime, timedelta

import aiohttp
import pytest

from tests.fake_rpc import FakeRpc
from tests.sse_client import dechunk, parse, read_events
from tests.support import WALLET
from tests.walletd_process import serve_args, until_stalled, walletd
from walletd.cli import EXIT_CONFIG, EXIT_UNAVAILABLE
from walletd.config import TABLE
from walletd.upstream.demo import LARGE_DEMO_WALLET
from walletd.upstream.helius.reader import parse_transaction


async def test_serve_streams_the_demo_wallet(server_factory):
    server = await server_factory()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/health") as resp:
            assert await resp.json() == {"status": "ok"}
        async with http.get(f"{server.url}/v4/wallet/{WALLET}/stream") as resp:
            events = await read_events(resp)
    assert events[0].name == "connected" and events[-1].name == "complete"
    server.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(server.proc.wait(), 15) == 0


@pytest.mark.parametrize(
    ("env", "loop"), [({}, "uvloop"), ({"WALLETD_LOOP": "asyncio"}, "asyncio")]
)
async def test_serve_runs_on_uvloop_unless_told_otherwise(server_factory, env, loop):
    server = await server_factory(**env)
    started = next(r for r in server.logs if r["message"] == "server_started")
    assert started["loop"] == loop
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/v4/wallet/{WALLET}/stream") as resp:
            assert (await read_events(resp))[-1].name == "complete"


async def test_sigterm_drains_open_streams_with_server_shutdown(server_factory):
    # The source never answers, so the streams stay open on heartbeats.
    server = await server_factory(DEMO_LATENCY_MS="600000", SHUTDOWN_GRACE="5")
    async with aiohttp.ClientSession() as http:
        responses = [await http.get(f"{server.url}/v4/wallet/{WALLET}/stream") for _ in range(3)]
        for resp in responses:
            assert (await read_events(resp, 2))[0].name == "connected"
        server.proc.send_signal(signal.SIGTERM)
        for resp in responses:
            final = (await read_events(resp))[-1]
            assert final.name == "error"
            assert final.data["code"] == "SERVER_SHUTDOWN"
            assert final.data["last_event_id"] is None
    assert await asyncio.wait_for(server.proc.wait(), 5) == 0
    await server.log_line("server_stopped")
    finished = [r for r in server.logs if r["message"] == "stream_finished"]
    assert [r["end_reason"] for r in finished] == ["error:SERVER_SHUTDOWN"] * 3
    for record in server.logs:
        assert {"timestamp", "level", "logger", "message", "request_id"} <= set(record)
        assert datetime.fromisoformat(record["timestamp"]).utcoffset() == timedelta(0)
    for record in finished:
        assert record["request_id"] and record["stream_id"] and record["wallet"] == WALLET


async def test_serve_exits_distinctly_when_the_port_is_taken(server_factory):
    server = await server_factory()
    proc = await walletd(*serve_args(server.port), env={}, stdout=asyncio.subprocess.DEVNULL)
    assert await asyncio.wait_for(proc.wait(), 20) == EXIT_UNAVAILABLE


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await walletd(
        *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


SECRETS = {
    "HELIUS_KEY": "hk-very-secret",
    "REDIS_URL": "redis://:redis-very-secret@127.0.0.1:6379/0",
    "RPC_URL": "https://rpc.example.com/rpc-very-secret",
    "ALERT_WEBHOOK_URL": "https://hooks.example.com/hook-very-secret",
    "ALERT_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
}


async def test_check_config_prints_env_lines_with_secrets_masked():
    code, out, _ = await run_cli("check-config", env={**SECRETS, "PORT": "9001"})
    assert code == 0
    lines = out.splitlines()
    assert [line.partition("=")[0] for line in lines] == sorted(spec.env for spec in TABLE)
    for expected in (
        "PORT=9001",
        "HELIUS_KEY=***",
        "ALERT_WEBHOOK_SECRET=***",
        "REDIS_URL=redis://:***@127.0.0.1:6379/0",
        "RPC_URL=https://rpc.example.com/***",
        "ALERT_WEBHOOK_URL=https://hooks.example.com/***",
        "SSE_BATCH_SIZE=100",
        "UPSTREAM=helius",
    ):
        assert expected in lines
    assert "very-secret" not in out and "MfKQ9r8" not in out


async def test_check_config_json_is_keyed_by_env_names():
    code, out, _ = await run_cli("check-config", "--json", env={**SECRETS, "PORT": "9001"})
    assert code == 0
    printed = json.loads(out)
    assert list(printed) == sorted(spec.env for spec in TABLE)
    assert printed["PORT"] == 9001 and printed["HELIUS_KEY"] == "***"
    assert printed["FEATURE_DEMO_PAGE"] is True and printed["METRICS_PORT"] is None
    assert "very-secret" not in out and "MfKQ9r8" not in out


async def test_check_config_warns_about_deprecated_names_on_stderr():
    code, out, err = await run_cli("check-config", env={"HELIUS_RPS": "5"})
    assert code == 0 and "UPSTREAM_RPS=5" in out.splitlines()
    assert "HELIUS_RPS is deprecated" in err


async def test_bad_configuration_exits_with_config_status_listing_every_problem():
    code, _, err = await run_cli("check-config", env={"PORT": "x", "SSE_BATCH_SIZE": "0"})
    assert code == EXIT_CONFIG
    assert "PORT" in err and "SSE_BATCH_SIZE" in err
    code, _, _ = await run_cli("serve", env={"PORT": "x"})
    assert code == EXIT_CONFIG


async def test_serve_with_upstream_rpc_streams_trades_from_the_provider(
    server_factory, aiohttp_server
):
    fake = FakeRpc("k3y")
    demo = fake.add_synthetic(WALLET)
    url = fake.url(await aiohttp_server(fake.app()))
    server = await server_factory(UPSTREAM="rpc", RPC_URL=url)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/v4/wallet/{WALLET}/stream") as resp:
            events = await read_events(resp)
    assert events[-1].name == "complete"
    trades = [t for e in events if e.name == "trades" for t in e.data["trades"]]
    expected = [t.to_dict() for tx in demo if (t := parse_transaction(tx, WALLET))]
    assert trades == expected and trades
    assert fake.calls("getTransactionsForAddress")
    server.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(server.proc.wait(), 15) == 0
    await server.log_line("server_stopped")
    assert "k3y" not in json.dumps(server.logs)


async def test_sigterm_reaches_a_slow_reader_in_full(server_factory):
    """Bytes still in walletd's buffers at SIGTERM are delivered before the process exits."""
    server = await server_factory(SHUTDOWN_GRACE="20")
    path = f"/v4/wallet/{LARGE_DEMO_WALLET}/stream"
    async with aiohttp.ClientSession() as http:  # warm the cache: the stream is then instant
        async with http.get(f"{server.url}{path}") as resp:
            assert (await read_events(resp))[-1].name == "complete"
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a slow, small reader
    sock.connect(("127.0.0.1", server.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")  # then read nothing: walletd's buffers fill
    assert head.startswith(b"HTTP/1.1 200")
    server.proc.send_signal(signal.SIGTERM)
    body = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    stream = parse(dechunk(body))
    assert stream.events[-1].name == "error"
    assert stream.events[-1].data["code"] == "SERVER_SHUTDOWN"
    assert stream.events[-1].data["last_event_id"] == stream.named("trades")[-1].id
    assert await asyncio.wait_for(server.proc.wait(), 20) == 0


async def test_sigterm_drains_with_the_listener_open_then_ends_streams_after_the_delay(
    server_factory,
):
    """SPEC §5: the balancer sees 503s, the open stream flows through DRAIN_DELAY, then
    gets SERVER_SHUTDOWN at its last id, and the process exits once it is gone."""
    delay_s, grace_s = 2.0, 30.0
    server = await server_factory(
        DEMO_LATENCY_MS="100", DRAIN_DELAY=str(delay_s), SHUTDOWN_GRACE=str(grace_s)
    )
    loop = asyncio.get_running_loop()
    path = f"/v4/wallet/{LARGE_DEMO_WALLET}/stream"
    async with aiohttp.ClientSession() as http:
        resp = await http.get(f"{server.url}{path}")
        events = await read_events(resp, 3)
        while events[-1].name != "trades":
            events += await read_events(resp, 1)
        rest = asyncio.create_task(read_events(resp))
        sent_at = loop.time()
        server.proc.send_signal(signal.SIGTERM)
        await server.log_line("server_stopping")
        # Fresh connections: the listener still answers, and says "not here".
        fresh = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=fresh) as other:
            async with other.get(f"{server.url}/ready") as ready:
                assert ready.status == 503
                assert (await ready.json())["status"] == "draining"
            async with other.get(f"{server.url}{path}") as refused:
                assert refused.status == 503
                assert int(refused.headers["Retry-After"]) >= 1
                body = await refused.json()
                assert body["code"] == "SERVICE_UNAVAILABLE" and body["retry_after"] >= 1
        after = await rest
        ended_at = loop.time()
        resp.close()
    code = await asyncio.wait_for(server.proc.wait(), grace_s)
    exited_at = loop.time()
    assert code == 0
    final = after[-1]
    assert final.name == "error" and final.data["code"] == "SERVER_SHUTDOWN"
    trades = [e for e in events + after if e.name == "trades"]
    assert final.data["last_event_id"] == trades[-1].id
    assert sum(e.name == "trades" for e in after) >= 3  # the stream kept flowing
    assert ended_at - sent_at >= delay_s
    assert exited_at - sent_at < delay_s + 5  # once the stream is gone, not at the grace


async def test_sigterm_exits_by_the_grace_when_a_client_never_reads(server_factory):
    """A stream whose client stopped reading cannot take its SERVER_SHUTDOWN; it is cut
    at SHUTDOWN_GRACE and the process exits 0 then, not later."""
    grace_s = 2.0
    server = await server_factory(SHUTDOWN_GRACE=str(grace_s))
    path = f"/v4/wallet/{LARGE_DEMO_WALLET}/stream"
    async with aiohttp.ClientSession() as http:  # warm the cache: the stream is then instant
        async with http.get(f"{server.url}{path}") as resp:
            warm = len(await resp.read())
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")  # then nothing more is read
    assert head.startswith(b"HTTP/1.1 200")
    await until_stalled(server, warm)  # its writes are blocked
    loop = asyncio.get_running_loop()
    sent_at = loop.time()
    server.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(server.proc.wait(), 20) == 0
    assert grace_s <= loop.time() - sent_at < grace_s + 1.5
    await server.log_line("server_stopped")
    assert any(r["message"] == "drain_timeout" for r in server.logs)
    writer.close()
