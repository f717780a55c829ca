"""`walletd stream`: the terminal client, run as a child process against real servers."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.fakes import ListSource, demo_pages
from tests.redis_server import free_port
from tests.sse_client import parse, read_events
from tests.stream_cli_child import COMMAND, FAST, PATIENT, Cli, jsonl, url_of, walletd_stream
from tests.support import WALLET
from tests.walletd_process import Server, serve_args, walletd
from walletd.appkeys import KEYSTORE
from walletd.client import stream as stream_cli
from walletd.client.render import PROGRESS_INTERVAL_S, Progress
from walletd.errors import EXIT_STATUSES
from walletd.upstream.demo import EMPTY_DEMO_WALLET, LARGE_DEMO_WALLET

LIMIT = 1500  # of the large demo wallet: about 25 pages, a few seconds at 50 ms a page


async def stream_trades(client: Any, wallet: str = WALLET, **params: str) -> list[dict[str, Any]]:
    """The trades of one uninterrupted stream read directly."""
    resp = await client.get(f"/v4/wallet/{wallet}/stream", params=params)
    return parse(await resp.read()).trades


@contextlib.asynccontextmanager
async def walletd_on(port: int, **env: str) -> AsyncIterator[Server]:
    """`walletd serve` on a given port (a restart on the port a killed one held)."""
    proc = await walletd(
        *serve_args(port), env={"LOG_FORMAT": "json", **env}, stdout=asyncio.subprocess.PIPE
    )
    server = Server(proc, port)
    try:
        await server.log_line("server_started")
        yield server
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


# Output


async def test_jsonl_prints_the_streams_trades_one_per_line(serve):
    client = await serve(SSE_BATCH_SIZE=7)
    expected = await stream_trades(client)
    status, out, err = await walletd_stream(WALLET, "--url", url_of(client), "--format", "jsonl")
    assert status == 0, err
    assert jsonl(out) == expected
    summary = json.loads(err.splitlines()[-1])  # the summary: stderr, stdout stays trades
    assert summary["complete"]["trades_found"] == len(expected)
    assert summary["client"] == summary["client"] | {"trades": len(expected), "retries": 0}


async def test_limit_stops_after_that_many_trades(serve):
    client = await serve(SSE_BATCH_SIZE=7)
    expected = await stream_trades(client, limit="10")
    status, out, err = await walletd_stream(
        WALLET, "--url", url_of(client), "--format", "jsonl", "--limit", "10"
    )
    assert status == 0, err
    assert jsonl(out) == expected and len(expected) == 10


async def test_table_prints_a_header_then_one_row_per_trade(serve):
    client = await serve()
    trades = await stream_trades(client)
    status, out, err = await walletd_stream(WALLET, "--url", url_of(client))
    assert status == 0, err
    header, *rows = out.splitlines()
    assert header.startswith("TIME (UTC)")
    assert len(rows) == len(trades)
    for row, trade in zip(rows, trades, strict=True):
        signature, action = trade["signature"], trade["action"]
        assert row.split()[1:2] == [action]
        assert row.endswith(f"{signature[:8]}...{signature[-4:]}")
        assert trade["token_in"]["amount"] in row and trade["token_out"]["amount"] in row
    assert err.startswith(f"complete: {len(trades)} trades")


async def test_quiet_prints_only_trades(serve):
    client = await serve()
    status, out, err = await walletd_stream(WALLET, "--url", url_of(client), "-q", "--limit", "3")
    assert (status, err) == (0, "")
    assert len(out.splitlines()) == 4


# Resume


async def test_resume_after_the_server_is_killed_mid_stream(serve, server_factory):
    expected = await stream_trades(await serve(), LARGE_DEMO_WALLET, limit=str(LIMIT))
    first = await server_factory(DEMO_LATENCY_MS="50")
    cli = await Cli.start(
        LARGE_DEMO_WALLET, "--url", first.url, "--format", "jsonl", "--limit", str(LIMIT), *PATIENT
    )
    await cli.trade_lines(1)
    first.proc.kill()
    await first.proc.wait()
    await cli.stderr_line("retrying")  # it noticed, and no server is there
    async with walletd_on(first.port, DEMO_LATENCY_MS="50"):
        status, out, err = await cli.finish()
    assert status == 0, err
    received = jsonl(out)
    assert len(received) == LIMIT  # none repeated, none missing
    assert received == expected
    summary = json.loads(err.splitlines()[-1])
    assert summary["client"]["retries"] >= 1 and summary["client"]["duplicates"] == 0


async def test_resume_after_a_sigterm_drain(serve, server_factory):
    expected = await stream_trades(await serve(), LARGE_DEMO_WALLET, limit=str(LIMIT))
    first = await server_factory(DEMO_LATENCY_MS="50", SHUTDOWN_GRACE="5")
    cli = await Cli.start(
        LARGE_DEMO_WALLET, "--url", first.url, "--format", "jsonl", "--limit", str(LIMIT), *PATIENT
    )
    await cli.trade_lines(1)
    first.proc.send_signal(signal.SIGTERM)
    notice = await cli.stderr_line("SERVER_SHUTDOWN")
    assert "retrying from" in notice  # the event's resume id
    assert await first.proc.wait() == 0
    async with walletd_on(first.port, DEMO_LATENCY_MS="50"):
        status, out, err = await cli.finish()
    assert status == 0, err
    assert jsonl(out) == expected


async def test_stream_timeouts_resume_until_complete(serve):
    client = await serve(SSE_MAX_STREAM_DURATION="0.25", DEMO_LATENCY_MS="50", SSE_BATCH_SIZE=20)
    expected = await stream_trades(await serve(), LARGE_DEMO_WALLET, limit="1000")
    status, out, err = await walletd_stream(
        LARGE_DEMO_WALLET, "--url", url_of(client), "--format", "jsonl", "--limit", "1000", *PATIENT
    )
    assert status == 0, err
    assert "STREAM_TIMEOUT" in err
    assert jsonl(out) == expected


async def test_ctrl_c_exits_130_with_whole_lines(serve):
    client = await serve(DEMO_LATENCY_MS="50")
    cli = await Cli.start(LARGE_DEMO_WALLET, "--url", url_of(client), "--format", "jsonl")
    await cli.trade_lines(1)
    cli.proc.send_signal(signal.SIGINT)
    status, out, _ = await cli.finish()
    assert status == 130
    assert len(jsonl(out)) >= 1  # every line whole JSON


async def test_a_closed_stdout_exits_141_quietly(serve):
    client = await serve()
    read_fd, write_fd = os.pipe()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *COMMAND,
        LARGE_DEMO_WALLET,
        "--url",
        url_of(client),
        "--format",
        "jsonl",
        stdout=write_fd,
        stderr=asyncio.subprocess.PIPE,
    )
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as reader:  # `| head -1`
        assert json.loads(await asyncio.to_thread(reader.readline))
    async with asyncio.timeout(30):
        _, err = await proc.communicate()
    assert (proc.returncode, err) == (141, b"")


# Exit statuses


@pytest.mark.parametrize(
    ("wallet", "extra", "status", "code"),
    [
        ("not-a-wallet", (), 20, "INVALID_WALLET"),
        (EMPTY_DEMO_WALLET, (), 23, "WALLET_NOT_FOUND"),
        (WALLET, ("--before", "not-a-signature"), 21, "INVALID_EVENT_ID"),
    ],
)
async def test_errors_exit_with_their_own_status(serve, wallet, extra, status, code):
    client = await serve()
    result = await walletd_stream(wallet, "--url", url_of(client), *extra)
    assert result[:2] == (status, "")
    assert code in result[2]


async def test_nothing_listening_exits_69_after_the_retries():
    status, out, err = await walletd_stream(
        WALLET, "--url", f"http://127.0.0.1:{free_port()}", *FAST
    )
    assert (status, out) == (69, "")
    assert err.count("retrying") == 2


async def test_usage_errors_exit_2():
    status, _, err = await walletd_stream(WALLET, "--limit", "0")
    assert status == 2 and "--limit" in err


def test_help_documents_every_exit_status(capsys):
    with pytest.raises(SystemExit) as exited:
        stream_cli.main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for code, status in EXIT_STATUSES.items():
        assert f"{status}  {code}" in out


# Keys


async def test_keys_required_and_none_given_exits_10(serve, keyed):
    client = await serve(**keyed)
    status, out, err = await walletd_stream(WALLET, "--url", url_of(client))
    assert (status, out) == (10, "")
    assert "AUTH_REQUIRED" in err


async def test_a_key_is_sent_and_never_printed(serve, keyed):
    client = await serve(**keyed)
    key, _ = await client.server.app[KEYSTORE].create("cli", ["stream"], None)
    bad = "wd_" + "A" * 32
    url = ("--url", url_of(client), "--limit", "3")
    runs = {
        "env": await walletd_stream(WALLET, *url, env={"WALLETD_API_KEY": key}),
        "flag wins": await walletd_stream(
            WALLET, *url, "--api-key", key, env={"WALLETD_API_KEY": bad}
        ),
        "bad": await walletd_stream(WALLET, *url, "--api-key", bad, env={"WALLETD_API_KEY": key}),
    }
    assert [status for status, _, _ in runs.values()] == [0, 0, 11]
    assert f"INVALID_API_KEY: Invalid API key (key {bad[:10]}...)" in runs["bad"][2]
    for _, out, err in runs.values():
        assert key not in out + err and bad not in out + err


# Rate limits


async def test_rate_limited_exits_13_when_retry_after_is_too_long(serve):
    client = await serve(RATE_LIMIT_REQUESTS=1)
    assert (await client.get("/v4/wallet/x/stream")).status == 400  # the window is now full
    status, _, err = await walletd_stream(WALLET, "--url", url_of(client), *FAST)
    assert status == 13 and "RATE_LIMITED" in err and "retrying" not in err


async def held(serve, **env: Any) -> tuple[Any, Any, asyncio.Event]:
    """A server whose one stream slot is taken by a stream held open at page 1."""
    gate = asyncio.Event()
    source = ListSource.from_pages(await demo_pages(WALLET, page_size=30), gates={1: gate})
    client = await serve(source=source, RATE_LIMIT_STREAMING_CONNECTIONS=1, **env)
    holder = await client.get(f"/v4/wallet/{WALLET}/stream")
    await read_events(holder, 2)
    return client, holder, gate


async def test_too_many_streams_waits_retry_after_then_streams(serve):
    client, holder, gate = await held(serve, STREAM_LEASE_TTL=3)  # Retry-After: 1
    cli = await Cli.start(WALLET, "--url", url_of(client), "--format", "jsonl", "--limit", "5")
    await cli.stderr_line("TOO_MANY_STREAMS")
    gate.set()  # the held stream completes, freeing the slot well within the Retry-After
    assert (await read_events(holder))[-1].name == "complete"
    status, out, err = await cli.finish()
    assert status == 0, err
    assert len(jsonl(out)) == 5


async def test_too_many_streams_exits_14_when_retry_after_is_too_long(serve):
    client, holder, gate = await held(serve)  # Retry-After: 10
    status, _, err = await walletd_stream(WALLET, "--url", url_of(client), *FAST)
    assert status == 14 and "TOO_MANY_STREAMS" in err
    holder.close()
    gate.set()


# The progress line, without a server (the SSE parser: test_sse.py)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_redraws_one_line_on_a_terminal():
    err = Terminal()
    progress = Progress(err, enabled=True)
    progress.update(1000, 20)
    progress.update(2000, 40)
    progress.clear()
    assert err.getvalue().split("\r") == [
        "",
        "scanned 1000 signatures, 20 trades found",
        "scanned 2000 signatures, 40 trades found",
        " " * 40,
        "",
    ]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_is_an_occasional_line_elsewhere_and_nothing_when_quiet():
    err, clock = io.StringIO(), FakeClock()
    progress = Progress(err, enabled=True, clock=clock)
    progress.update(10, 1)
    clock.now = PROGRESS_INTERVAL_S
    progress.update(20, 2)
    progress.update(30, 3)
    assert err.getvalue() == "scanned 20 signatures, 2 trades found\n"
    quiet = Terminal()
    progress = Progress(quiet, enabled=False, clock=clock)
    progress.update(10, 1)
    clock.now *= 2
    progress.update(20, 2)
    progress.clear()
    assert quiet.getvalue() == ""
