"""A running `walletd serve`: SIGHUP reloads flags and keys without dropping streams; a
second SIGTERM during the drain exits at once; a bad FEATURES_FILE refuses to start."""

from __future__ import annotations

import asyncio
import json
import signal
import socket

import aiohttp

from tests.sse_client import read_events
from tests.support import WALLET
from tests.walletd_process import until_stalled, walletd
from walletd.cli import EXIT_CONFIG
from walletd.upstream.demo import LARGE_DEMO_WALLET

STREAM = f"/v4/wallet/{WALLET}/stream"


async def event_names(http: aiohttp.ClientSession, url: str) -> list[str]:
    async with http.get(url, params={"limit": "1"}) as resp:
        return [e.name for e in await read_events(resp)]


async def test_sighup_reloads_flags_without_dropping_streams(server_factory, tmp_path):
    flags = tmp_path / "features.env"
    flags.write_text("# flags\nFEATURE_PROGRESS_EVENTS=true\n")
    server = await server_factory(
        FEATURES_FILE=str(flags), LOG_LEVEL="INFO", SSE_KEEPALIVE_INTERVAL="0.2"
    )
    url = f"{server.url}{STREAM}"
    async with aiohttp.ClientSession() as http:
        assert "progress" in await event_names(http, url)
        # A stream held open on heartbeats across the reload (the source is slow).
        held = await http.get(f"{server.url}/v4/wallet/{LARGE_DEMO_WALLET}/stream")
        await read_events(held, 2)
        flags.write_text("FEATURE_PROGRESS_EVENTS=false\n")
        server.proc.send_signal(signal.SIGHUP)
        reloaded = await server.log_line("features_reloaded")
        assert reloaded["changed"] == {"progress_events": False}
        assert "progress" not in await event_names(http, url)
        assert await read_events(held, 3)  # the held stream goes on
        # A bad file keeps the flags as they were.
        flags.write_text("FEATURE_PROGRESS_EVENTS=maybe\n")
        server.proc.send_signal(signal.SIGHUP)
        failed = await server.log_line("features_reload_failed")
        assert "FEATURE_PROGRESS_EVENTS" in failed["error"]
        assert "progress" not in await event_names(http, url)
        held.close()


async def test_a_bad_features_file_refuses_to_start(tmp_path):
    flags = tmp_path / "features.env"
    flags.write_text("FEATURE_NO_SUCH_THING=true\n")
    proc = await walletd(
        "check-config", env={"FEATURES_FILE": str(flags)}, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    assert proc.returncode == EXIT_CONFIG
    assert b"FEATURE_NO_SUCH_THING" in err


async def test_a_second_signal_during_the_drain_exits_at_once(server_factory):
    server = await server_factory(SHUTDOWN_GRACE="60", RATE_LIMIT_REQUESTS="100000")
    path = f"/v4/wallet/{LARGE_DEMO_WALLET}/stream"
    async with aiohttp.ClientSession() as http:  # warm the cache: the stream is then instant
        async with http.get(f"{server.url}{path}") as resp:
            warm = len(await resp.read())
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a reader that stalls the drain
    sock.connect(("127.0.0.1", server.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await reader.readuntil(b"\r\n\r\n")
    await until_stalled(server, warm)  # its writes are blocked: the drain cannot finish
    server.proc.send_signal(signal.SIGTERM)
    await server.log_line("draining_streams")
    server.proc.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(server.proc.wait(), 5)  # not the 60 s grace
    assert code == 128 + signal.SIGTERM
    rest = await server.proc.stdout.read()
    assert any(
        json.loads(line)["message"] == "second_signal_exit" for line in rest.splitlines() if line
    )
    writer.close()
