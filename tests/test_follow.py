"""Live follow (SPEC §1 "Live follow") against the demo source's live trades: the wire
protocol, its ids, its 400s, and resuming from any cut without loss or repeat."""

from __future__ import annotations

from typing import Any

import pytest

from tests.clocks import FakeClock
from tests.sse_client import EventReader, parse
from tests.support import WALLET
from tests.waiting import eventually
from walletd.app import drain
from walletd.appkeys import LIVE
from walletd.upstream.demo import EMPTY_DEMO_WALLET, signature_at
from walletd.upstream.demo_live import current_tick, tick_signature

URL = f"/v4/wallet/{WALLET}/stream"
NOW = 1_800_000_000.0  # unix seconds: the demo wall clock of these tests
INTERVAL = 10
FOLLOW_ENV = {
    "DEMO_LIVE_INTERVAL": INTERVAL,
    "FOLLOW_POLL_INTERVAL": 0.1,
    "SSE_KEEPALIVE_INTERVAL": 0.3,
}


NOW_TICK = current_tick(WALLET, NOW, INTERVAL)  # the newest trade at NOW


def tick(k: int) -> str:
    return tick_signature(WALLET, k, float(INTERVAL))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
async def client(serve: Any, clock: FakeClock) -> Any:
    return await serve(wall_clock=clock, **FOLLOW_ENV)


async def test_follow_sends_history_caught_up_then_live_trades(
    client: Any, clock: FakeClock
) -> None:
    now = NOW_TICK
    async with client.get(URL, params={"follow": "true"}) as resp:
        assert resp.status == 200
        reader = EventReader(resp)
        history = await reader.until("caught_up")
        caught_up = history[-1]
        assert caught_up.id == tick(now)  # the head: the newest signature
        assert caught_up.data["trades_found"] == sum(
            len(e.data["trades"]) for e in history if e.name == "trades"
        )
        assert "truncated" not in caught_up.data
        for event in history:
            if event.name == "trades":
                assert event.id is not None
                oldest, head = event.id.split(".")
                assert head == tick(now)
                assert oldest == event.data["trades"][-1]["signature"]
        clock.advance(INTERVAL)
        live = await reader.until("trades")
        assert {e.name for e in live[:-1]} <= {"heartbeat"}
        assert live[-1].id == tick(now + 1)
        assert [t["signature"] for t in live[-1].data["trades"]] == [tick(now + 1)]
        assert live[-1].data["total"] == caught_up.data["trades_found"] + 1
        clock.advance(3 * INTERVAL)
        later = await reader.until("trades")
        event_trades = later[-1].data["trades"]
        assert [t["signature"] for t in event_trades] == [tick(now + k) for k in (2, 3, 4)]
        assert later[-1].id == tick(now + 4)
        assert [t["timestamp"] for t in event_trades] == sorted(
            t["timestamp"] for t in event_trades
        )
        assert (await reader.until("heartbeat"))[-1].name == "heartbeat"


async def test_follow_with_limit_stops_history_then_goes_live(
    client: Any, clock: FakeClock
) -> None:
    async with client.get(URL, params={"follow": "true", "limit": "5"}) as resp:
        reader = EventReader(resp)
        history = await reader.until("caught_up")
        trades = [t for e in history if e.name == "trades" for t in e.data["trades"]]
        assert len(trades) == 5
        clock.advance(INTERVAL)
        live = await reader.until("trades")
        assert live[-1].data["trades"][0]["signature"] == tick(NOW_TICK + 1)


async def test_follow_relabels_every_batched_history_frame(serve: Any, clock: FakeClock) -> None:
    # A recorded history goes out in batched writes; a follower's copy of each shared
    # frame carries `<oldest>.<head>`, its trades byte for byte the plain stream's.
    client = await serve(wall_clock=clock, SSE_BATCH_SIZE=7, CACHE_TTL=3600, **FOLLOW_ENV)
    plain = parse(await (await client.get(URL)).read()).named("trades")
    for _ in range(2):  # the first records the history, the second reads the recording
        async with client.get(URL, params={"follow": "true"}) as resp:
            history = await EventReader(resp).until("caught_up")
        trades = [e for e in history if e.name == "trades"]
        assert [e.data for e in trades] == [e.data for e in plain]
        head = tick(NOW_TICK)
        assert [e.id for e in trades] == [f"{e.id}.{head}" for e in plain]


@pytest.mark.parametrize(
    ("params", "headers", "code"),
    [
        ({"follow": "true", "before": signature_at(WALLET, 3)}, {}, "INVALID_PARAMETER"),
        ({"follow": "maybe"}, {}, "INVALID_PARAMETER"),
        ({"follow": "true"}, {"Last-Event-ID": "not-a-signature"}, "INVALID_EVENT_ID"),
        ({"follow": "true"}, {"Last-Event-ID": f"{signature_at(WALLET, 3)}."}, "INVALID_EVENT_ID"),
        ({"follow": "true"}, {"Last-Event-ID": f"x.{tick(1)}"}, "INVALID_EVENT_ID"),
        # Well formed, unknown: in the history part, the head, the live form.
        (
            {"follow": "true"},
            {"Last-Event-ID": f"{signature_at(EMPTY_DEMO_WALLET, 0)}.{tick(180_000_000)}"},
            "INVALID_EVENT_ID",
        ),
        (
            {"follow": "true"},
            {"Last-Event-ID": f"{signature_at(WALLET, 3)}.{signature_at(EMPTY_DEMO_WALLET, 1)}"},
            "INVALID_EVENT_ID",
        ),
        (
            {"follow": "true"},
            {"Last-Event-ID": signature_at(EMPTY_DEMO_WALLET, 1)},
            "INVALID_EVENT_ID",
        ),
        ({"follow": "true"}, {"Last-Event-ID": tick(999_999_999)}, "INVALID_EVENT_ID"),
    ],
)
async def test_follow_refuses_bad_requests_before_the_stream(
    client: Any, params: dict[str, str], headers: dict[str, str], code: str
) -> None:
    async with client.get(URL, params=params, headers=headers) as resp:
        assert resp.status == 400
        assert (await resp.json())["code"] == code


async def test_follow_of_empty_wallet_is_caught_up_without_id(client: Any) -> None:
    url = f"/v4/wallet/{EMPTY_DEMO_WALLET}/stream"
    async with client.get(url, params={"follow": "true"}) as resp:
        reader = EventReader(resp)
        events = await reader.until("caught_up")
        assert [e.name for e in events if e.name != "progress"] == ["connected", "caught_up"]
        assert events[-1].id is None
        assert events[-1].data["trades_found"] == 0
        assert (await reader.next()).name == "heartbeat"


async def test_follow_resumes_with_a_live_id(client: Any, clock: FakeClock) -> None:
    now = NOW_TICK
    clock.advance(2 * INTERVAL)
    headers = {"Last-Event-ID": tick(now)}
    async with client.get(URL, params={"follow": "true"}, headers=headers) as resp:
        reader = EventReader(resp)
        events = await reader.until("caught_up")
        assert [e.name for e in events if e.name != "progress"] == ["connected", "caught_up"]
        assert events[-1].id == tick(now)
        assert events[0].data["resumed_from"] == tick(now)
        live = await reader.until("trades")
        assert [t["signature"] for t in live[-1].data["trades"]] == [tick(now + 1), tick(now + 2)]
        assert live[-1].id == tick(now + 2)


async def test_follow_timeout_and_ids_stay_resumable(serve: Any, clock: FakeClock) -> None:
    client = await serve(wall_clock=clock, SSE_MAX_STREAM_DURATION=0.5, **FOLLOW_ENV)
    async with client.get(URL, params={"follow": "true"}) as resp:
        stream = parse(await resp.read())
    assert stream.events[-1].name == "error"
    error = stream.events[-1].data
    assert error["code"] == "STREAM_TIMEOUT"
    assert error["last_event_id"] == tick(NOW_TICK)


async def test_follow_drain_ends_with_server_shutdown_and_resume_id(
    client: Any, clock: FakeClock
) -> None:
    async with client.get(URL, params={"follow": "true"}) as resp:
        reader = EventReader(resp)
        await reader.until("caught_up")
        clock.advance(INTERVAL)
        live_id = (await reader.until("trades"))[-1].id
        await drain(client.server.app, delay_s=0)
        error = (await reader.until("error"))[-1].data
    assert error["code"] == "SERVER_SHUTDOWN"
    assert error["last_event_id"] == live_id
    # The poller stops with its last follower.
    await eventually(lambda: client.server.app[LIVE].feeds == 0, what="the poller stopped")
