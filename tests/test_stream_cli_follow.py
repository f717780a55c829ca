"""`walletd stream --follow`: the history, "caught up", then live trades, across dropped
connections, against a real walletd whose demo trades land when the test moves its wall
clock; the connections pass through a proxy that the test cuts."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

from tests.clocks import FakeClock
from tests.sse_client import EventReader
from tests.stream_cli_child import PATIENT, Cli, jsonl, url_of, walletd_stream
from tests.support import WALLET
from tests.tcp_proxy import proxy_to
from walletd.appkeys import KEYSTORE
from walletd.client.render import TABLE_HEADER, short
from walletd.upstream.demo_live import current_tick, tick_signature

NOW = 1_800_000_000.0  # unix seconds: the demo wall clock of these tests
INTERVAL = 10
FOLLOW_ENV = {
    "DEMO_LIVE_INTERVAL": INTERVAL,
    "FOLLOW_POLL_INTERVAL": 0.1,
    "SSE_BATCH_SIZE": 20,
    "SSE_RETRY_MS": 50,
}
# The newest trade of the history; live ones follow.
FIRST_TICK = current_tick(WALLET, NOW, INTERVAL)


def tick(k: int) -> str:
    return tick_signature(WALLET, k, float(INTERVAL))


async def history(client: Any, **params: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The trades of a follow stream up to `caught_up`, and `caught_up`'s data, read
    directly: what the CLI must print first (the clock stands still meanwhile)."""
    async with client.get(f"/v4/wallet/{WALLET}/stream", params={"follow": "true", **params}) as r:
        events = await EventReader(r).until("caught_up")
    trades = [t for e in events if e.name == "trades" for t in e.data["trades"]]
    return trades, events[-1].data


async def stop(cli: Cli) -> tuple[int, str, str]:
    cli.proc.send_signal(signal.SIGINT)
    return await cli.finish()


async def test_follow_prints_every_trade_once_across_cuts(serve: Any) -> None:
    clock = FakeClock(NOW)
    client = await serve(wall_clock=clock, **FOLLOW_ENV)
    expected, _ = await history(client)
    assert expected[0]["signature"] == tick(FIRST_TICK) and len(expected) > 100
    async with proxy_to(client.port) as proxy, asyncio.timeout(60):
        # 1. Cut inside the history, after 3 of its `trades` events: the CLI resumes with
        # the history form of the id, `<oldest>.<head>`.
        proxy.cut_before(b"\nevent: trades", skip=3)
        cli = await Cli.start(WALLET, "--url", proxy.url, "--follow", "--format", "jsonl", *PATIENT)
        await proxy.cut_done.wait()
        assert "retrying from" in await cli.stderr_line("retrying")
        assert (await cli.stderr_line("caught up")).startswith(f"caught up: {len(expected)} trades")
        await cli.trade_lines(len(expected))

        # 2. Live trades arrive as they land.
        clock.advance(INTERVAL)
        await cli.trade_lines(len(expected) + 1)

        # 3. Cut while live; two trades land while the CLI cannot get through.
        proxy.refusing = True
        assert proxy.drop_all() > 0
        await cli.stderr_line("retrying")
        clock.advance(2 * INTERVAL)
        proxy.refusing = False
        await cli.trade_lines(len(expected) + 3)

        # 4. A resumed connection cut just before its `caught_up`: resumed again from
        # the live id, nothing repeated.
        proxy.cut_before(b"\nevent: caught_up")
        assert proxy.drop_all() > 0
        await proxy.cut_done.wait()
        clock.advance(INTERVAL)
        await cli.trade_lines(len(expected) + 4)
        status, out, err = await stop(cli)

    assert status == 130
    printed = [t["signature"] for t in jsonl(out)]
    live = [tick(FIRST_TICK + k) for k in (1, 2, 3, 4)]
    assert printed == [t["signature"] for t in expected] + live  # each once, in order
    assert jsonl(out)[: len(expected)] == expected
    assert err.count("caught up") == 1
    summary = json.loads(err.splitlines()[-1])
    assert summary["stopped"] == {"caught_up": True}
    assert summary["client"]["trades"] == len(expected) + 4
    assert summary["client"]["live_trades"] == 4
    assert summary["client"]["duplicates"] == 0
    assert summary["client"]["retries"] >= 3
    assert proxy.accepted >= 4


async def test_follow_with_limit_cut_before_caught_up_goes_live_from_the_head(
    serve: Any,
) -> None:
    clock = FakeClock(NOW)
    client = await serve(wall_clock=clock, **FOLLOW_ENV)
    expected, _ = await history(client, limit="5")
    async with proxy_to(client.port) as proxy, asyncio.timeout(60):
        # Every history trade the limit allows is printed, then the cut: the CLI must
        # not ask for `limit=0` (a 400), nor for more history.
        proxy.cut_before(b"\nevent: caught_up")
        cli = await Cli.start(WALLET, "--url", proxy.url, "--follow", "--limit", "5", *PATIENT)
        await proxy.cut_done.wait()
        await cli.stderr_line("retrying")
        assert (await cli.stderr_line("caught up")).startswith("caught up: 5 trades")
        clock.advance(INTERVAL)
        await cli.trade_lines(1 + 5 + 1)  # the header, the history, one live trade
        status, out, err = await stop(cli)

    assert status == 130
    header, *rows = out.splitlines()
    assert header == TABLE_HEADER
    signatures = [t["signature"] for t in expected] + [tick(FIRST_TICK + 1)]
    assert [row.rsplit(maxsplit=1)[-1] for row in rows] == [short(s, 8, 4) for s in signatures]
    assert "stopped: 6 trades (" in err and "; 1 live)" in err


async def test_follow_ends_with_the_status_of_an_error_it_cannot_resume(
    serve: Any, keyed: dict[str, str]
) -> None:
    clock = FakeClock(NOW)
    client = await serve(wall_clock=clock, **FOLLOW_ENV, **keyed)
    store = client.server.app[KEYSTORE]
    key, record = await store.create("follower", ["stream"], None)
    cli = await Cli.start(
        WALLET, "--url", url_of(client), "--follow", "-q", *PATIENT, env={"WALLETD_API_KEY": key}
    )
    await cli.trade_lines(2)  # the header and a first row: the stream is open
    await store.revoke(record.id)  # its open streams end with INVALID_API_KEY
    status, out, err = await cli.finish()
    assert status == 11
    assert out.splitlines()[0] == TABLE_HEADER and len(out.splitlines()) >= 2
    assert "INVALID_API_KEY" in err and "retrying" not in err
    assert key not in err


async def test_follow_with_before_is_a_usage_error() -> None:
    status, out, err = await walletd_stream(WALLET, "--follow", "--before", tick(FIRST_TICK))
    assert (status, out) == (2, "")
    assert "--before cannot be used with --follow" in err
