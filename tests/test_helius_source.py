"""The Helius source against the fake Helius over real HTTP: order, pipelining, faults."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.clocks import FakeClock
from tests.fake_helius import FakeHelius
from tests.sse_client import parse, read_events
from tests.support import WALLET
from walletd.upstream.breaker import CircuitBreaker, CircuitState
from walletd.upstream.demo import LARGE_DEMO_WALLET, DemoSource
from walletd.upstream.helius.reader import parse_transaction
from walletd.upstream.pacing import MARGIN

STREAM = "/v4/wallet/{}/stream"
# A wallet large enough for three signature pages (1000 each).
BIG = LARGE_DEMO_WALLET


@pytest.fixture
async def fake(aiohttp_server):
    fake = FakeHelius(synthetic={WALLET: None, BIG: 2500})
    server = await aiohttp_server(fake.app())
    fake.env = fake.walletd_env(server, UPSTREAM_TIMEOUT=5)  # type: ignore[attr-defined]
    return fake


async def demo_trades(wallet: str, count: int | None = None) -> list[dict]:
    trades: list[dict] = []
    seen = 0
    async for page in DemoSource().pages(wallet, None):
        for tx in page.transactions:
            if count is not None and seen >= count:
                return trades
            seen += 1
            if (trade := parse_transaction(tx, wallet)) is not None:
                trades.append(trade.to_dict())
    return trades


async def test_helius_and_demo_sources_yield_identical_trades(serve, fake):
    client = await serve(**fake.env)
    stream = parse(await (await client.get(STREAM.format(WALLET))).read())
    assert stream.events[-1].name == "complete"
    assert stream.trades == await demo_trades(WALLET)
    assert stream.events[-1].data["signatures_scanned"] == len(fake.histories[WALLET])


async def test_first_trades_go_out_before_the_last_signature_page_is_asked(serve, fake):
    fake.faults.transactions.latency_s = 0.02
    client = await serve(**fake.env)
    async with client.get(STREAM.format(BIG)) as resp:
        events: list[Any] = []
        while not any(e.name == "trades" for e in events):
            events += await read_events(resp, 1)
        first_trades_at = time.monotonic()
        rest = await read_events(resp)
    pages = fake.calls("rpc")
    assert len(pages) == 3  # 1000 + 1000 + 500
    assert first_trades_at < pages[-1].t
    trades = [t for e in events + rest if e.name == "trades" for t in e.data["trades"]]
    assert trades == await demo_trades(BIG, 2500)


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("status", {"status": 429, "retry_after": 1}),
        ("status", {"status": 502}),
        ("reset", {}),
        ("reset_body", {}),
        ("malformed", {}),
        ("truncated", {}),
        ("rpc_error", {"code": -32603, "message": "internal"}),
    ],
)
async def test_transient_faults_heal_with_exactly_the_right_trades(serve, fake, kind, options):
    for endpoint in (fake.faults.rpc, fake.faults.transactions):
        endpoint.inject(kind, times=1, **options)
    client = await serve(**fake.env)
    stream = parse(await (await client.get(STREAM.format(WALLET))).read())
    assert stream.events[-1].name == "complete", stream.events[-1]
    assert stream.trades == await demo_trades(WALLET)


async def test_retry_after_is_honoured(serve, fake):
    fake.faults.rpc.inject("status", times=1, status=429, retry_after=1)
    client = await serve(**fake.env)
    await (await client.get(STREAM.format(WALLET))).read()
    first, second = fake.calls("rpc")[:2]
    assert second.t - first.t >= 1.0


async def test_a_429_slows_the_pacer_down_then_it_recovers(serve, fake):
    """After a refusal the endpoint's starts are spaced at half the rate."""
    fake.faults.transactions.inject("status", times=1, skip=4, status=429, retry_after=0.1)
    client = await serve(**{**fake.env, "UPSTREAM_RPS": "20"})  # 55 ms apart at full speed
    stream = parse(await (await client.get(STREAM.format(BIG))).read())
    assert stream.trades == await demo_trades(BIG, 2500)
    calls = fake.calls("transactions")
    refused = next(i for i, c in enumerate(calls) if c.status == 429)
    full = MARGIN / 20

    def spacing(first: int, last: int) -> float:
        """Mean gap between arrivals first..last: the fake stamps arrivals in a busy event
        loop, so single gaps jitter both ways; their mean over a span does not."""
        return (calls[last].t - calls[first].t) / (last - first)

    assert spacing(0, refused) >= full * 0.95
    # The retry waits its Retry-After; the starts after it are paced at half the rate...
    assert spacing(refused + 1, refused + 3) >= 2 * full * 0.85
    # Winning the rate back is tested with a fake clock (test_pacing.py): here the last
    # calls also wait on signature pages, and a loaded machine blurs what is left.


async def test_later_batches_keep_coming_while_one_waits_out_retry_after(serve, fake):
    fake.faults.transactions.inject("status", times=1, skip=1, status=429, retry_after=1)
    client = await serve(**fake.env)
    stream = parse(await (await client.get(STREAM.format(BIG))).read())
    assert stream.trades == await demo_trades(BIG, 2500)
    calls = fake.calls("transactions")
    refused = next(c for c in calls if c.status == 429)
    retry = next(c for c in calls if c.t > refused.t and c.asked == refused.asked)
    assert retry.t - refused.t >= 1.0
    meanwhile = [c for c in calls if refused.t < c.t < retry.t]
    # The usual window is 4 batches; while the refused one waits, the window widens.
    assert len(meanwhile) >= 8


async def test_short_batches_are_completed(serve, fake):
    fake.faults.transactions.inject("short", times=1, drop=7)
    client = await serve(**fake.env)
    stream = parse(await (await client.get(STREAM.format(WALLET))).read())
    assert stream.trades == await demo_trades(WALLET)
    asked = [len(call.asked) for call in fake.calls("transactions")]
    # Two batches (failed transactions are listed, never fetched), then the seven again.
    assert len(asked) == 3 and asked.count(7) == 1


async def test_rejected_key_is_a_fetch_error_without_retries(serve, fake):
    env = {**fake.env, "HELIUS_KEY": "wrong-key"}
    client = await serve(**env)
    stream = parse(await (await client.get(STREAM.format(WALLET))).read())
    assert stream.events[-1].data["code"] == "DATA_FETCH_ERROR"
    assert "wrong-key" not in str(stream.events[-1].data)
    assert len(fake.log) == 1


async def test_upstream_down_gives_fetch_errors_then_the_circuit_opens(serve, fake):
    fake.faults.rpc.inject("status", times=None, status=503)
    client = await serve(**fake.env, UPSTREAM_MAX_RETRIES=1, CACHE_TTL=0)
    for _ in range(3):
        stream = parse(await (await client.get(STREAM.format(WALLET))).read())
        assert stream.events[-1].data["code"] == "DATA_FETCH_ERROR"
    calls = len(fake.log)
    assert calls == 6  # three streams, one call and one retry each
    started = time.monotonic()
    stream = parse(await (await client.get(STREAM.format(WALLET))).read())
    error = stream.events[-1].data
    assert error["code"] == "SERVICE_UNAVAILABLE"
    assert 1 <= error["retry_after"] <= 30
    assert time.monotonic() - started < 1  # fails fast
    assert len(fake.log) == calls  # the upstream was not asked
    ready = await (await client.get("/ready")).json()
    assert ready["reasons"] == ["upstream_circuit_open"]


async def open_circuit(serve, fake, clock):
    """A walletd whose circuit the failing upstream has opened."""
    fake.faults.rpc.inject("status", times=None, status=503)
    breaker = CircuitBreaker(clock=clock)
    client = await serve(**fake.env, UPSTREAM_MAX_RETRIES=0, CACHE_TTL=0, breaker=breaker)
    for _ in range(3):
        stream = parse(await (await client.get(STREAM.format(WALLET))).read())
        assert stream.events[-1].data["code"] == "DATA_FETCH_ERROR"
    assert breaker.state is CircuitState.OPEN
    return client, breaker


async def test_after_the_open_period_one_probe_closes_the_circuit(serve, fake):
    clock = FakeClock()
    client, breaker = await open_circuit(serve, fake, clock)
    fake.faults.rpc.clear()  # the upstream is back, but the circuit is still open
    clock.advance(29)
    stream = parse(await (await client.get(STREAM.format(WALLET))).read())
    assert stream.events[-1].data["code"] == "SERVICE_UNAVAILABLE"
    assert stream.events[-1].data["retry_after"] == 1
    calls = len(fake.log)
    clock.advance(1)
    assert (await (await client.get("/ready")).json())["reasons"] == ["upstream_circuit_open"]
    stream = parse(await (await client.get(STREAM.format(WALLET))).read())
    assert stream.events[-1].name == "complete"
    assert stream.trades == await demo_trades(WALLET)
    assert breaker.state is CircuitState.CLOSED
    assert fake.log[calls].endpoint == "rpc"  # the probe was the first call, then the rest
    ready = await client.get("/ready")
    assert ready.status == 200 and (await ready.json())["status"] == "ok"


async def test_a_failed_probe_opens_the_circuit_for_another_period(serve, fake):
    clock = FakeClock()
    client, breaker = await open_circuit(serve, fake, clock)
    clock.advance(30)
    calls = len(fake.log)
    stream = parse(await (await client.get(STREAM.format(WALLET))).read())
    assert stream.events[-1].data["code"] == "DATA_FETCH_ERROR"
    assert len(fake.log) == calls + 1  # one probe, no retries
    assert breaker.state is CircuitState.OPEN
    stream = parse(await (await client.get(STREAM.format(WALLET))).read())
    assert stream.events[-1].data["code"] == "SERVICE_UNAVAILABLE"
    assert stream.events[-1].data["retry_after"] == 30
    assert len(fake.log) == calls + 1


async def test_unknown_cursor_is_refused_before_the_stream(serve, fake):
    client = await serve(**fake.env)
    unknown = (
        "5g5rkbqii8rkHfgC8CWLDB2bBzKeoXcqmjyFbMvxUW9xXEEHnFc1QRqiG9eEcxdmLk6XgjVpJRnwYqqbWZKg3eBP"
    )
    resp = await client.get(STREAM.format(WALLET), params={"before": unknown})
    assert resp.status == 400
    assert (await resp.json())["code"] == "INVALID_EVENT_ID"


async def test_concurrent_streams_of_a_wallet_share_the_upstream_calls(serve, fake):
    fake.faults.set_latency(0.02)
    client = await serve(**fake.env)
    one = parse(await (await client.get(STREAM.format(BIG))).read())
    alone = len(fake.log)
    fake.log.clear()
    client2 = await serve(**fake.env)
    streams = await asyncio.gather(*(client2.get(STREAM.format(BIG)) for _ in range(20)))
    bodies = [parse(await r.read()) for r in streams]
    assert all(b.trades == one.trades for b in bodies)
    assert len(fake.log) == alone


async def test_resume_continues_exactly_after_the_cursor(serve, fake):
    client = await serve(**fake.env, SSE_BATCH_SIZE=7)
    whole = parse(await (await client.get(STREAM.format(WALLET))).read())
    cut = whole.named("trades")[3]
    rest = parse(
        await (await client.get(STREAM.format(WALLET), headers={"Last-Event-ID": cut.id})).read()
    )
    sent = [t for b in whole.named("trades")[:4] for t in b.data["trades"]]
    assert sent + rest.trades == whole.trades


async def test_a_hung_request_times_out_and_is_retried(serve, fake):
    fake.faults.transactions.inject("hang", times=1)
    client = await serve(**{**fake.env, "UPSTREAM_TIMEOUT": "0.5"})
    started = time.monotonic()
    stream = parse(await (await client.get(STREAM.format(WALLET))).read())
    assert stream.events[-1].name == "complete"
    assert stream.trades == await demo_trades(WALLET)
    assert 0.5 <= time.monotonic() - started < 10


async def test_a_persistent_hang_ends_in_a_fetch_error_within_the_deadline(serve, fake):
    fake.faults.rpc.inject("hang", times=None)
    env = {**fake.env, "UPSTREAM_TIMEOUT": "0.3", "UPSTREAM_MAX_RETRIES": "2"}
    client = await serve(**env, UPSTREAM_RETRY_DEADLINE=5)
    started = time.monotonic()
    stream = parse(await (await client.get(STREAM.format(WALLET))).read())
    assert stream.events[-1].data["code"] == "DATA_FETCH_ERROR"
    assert stream.events[-1].data["last_event_id"] is None
    assert time.monotonic() - started < 5
    assert len(fake.calls("rpc")) == 3
