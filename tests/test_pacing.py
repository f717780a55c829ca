"""Client-side pacing: starts at least 1/rps apart, in order, under concurrency."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from aiohttp import web

from tests.support import make_settings
from walletd.upstream.breaker import CircuitBreaker
from walletd.upstream.pacing import MARGIN, MAX_SLOWDOWN, RECOVERY_CALLS, Pacer
from walletd.upstream.transport import UpstreamTransport


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds  # each caller's wait is measured from the same `now`


async def test_sequential_calls_are_spaced():
    t = FakeTime()
    pacer = Pacer(10, clock=t.clock, sleep=t.sleep)
    starts = []
    for _ in range(5):
        await pacer.wait()
        starts.append(t.now)
    assert starts == pytest.approx([100 + n * 0.1 * MARGIN for n in range(5)])


async def test_idle_time_is_not_banked_into_a_burst():
    t = FakeTime()
    pacer = Pacer(2, clock=t.clock, sleep=t.sleep)
    await pacer.wait()
    t.now += 60
    await pacer.wait()
    first = t.now
    await pacer.wait()
    assert t.now - first == pytest.approx(0.5 * MARGIN)


async def test_a_batch_goes_at_once_and_reserves_one_interval_per_call():
    """Providers meter every call of a JSON-RPC batch: the request after a batch of N
    waits N intervals, and the batch itself is not held back."""
    t = FakeTime()
    pacer = Pacer(10, clock=t.clock, sleep=t.sleep)
    starts = []
    for calls in (1, 25, 1, 3, 1):
        starts.append(await pacer.wait(calls))
    assert starts == pytest.approx([100 + n * 0.1 * MARGIN for n in (0, 1, 26, 27, 30)])


async def test_concurrent_callers_get_distinct_slots_in_order():
    started: list[tuple[int, float]] = []
    loop = asyncio.get_running_loop()
    pacer = Pacer(50)  # real clock: 20 ms apart

    async def call(n: int) -> None:
        await pacer.wait()
        started.append((n, loop.time()))

    await asyncio.gather(*(call(n) for n in range(6)))
    assert [n for n, _ in started] == list(range(6))
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(started)]
    assert all(gap >= 0.019 for gap in gaps)  # lower bounds only: never early


async def test_spacing_is_measured_from_the_real_start_after_a_stall():
    """Sleepers that oversleep (a busy event loop) must not then start back to back."""
    t = FakeTime()
    oversleep = iter([0.5, 0.0, 0.3, 0.0, 0.0, 0.2, 0.0])

    async def late_sleep(seconds: float) -> None:
        t.now += seconds + next(oversleep, 0.0)

    pacer = Pacer(10, clock=t.clock, sleep=late_sleep)
    starts: list[float] = []

    async def call() -> None:
        await pacer.wait()
        starts.append(t.now)

    await asyncio.gather(*(call() for _ in range(8)))
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 0.1 * MARGIN - 1e-9


async def test_a_refusal_halves_the_rate_and_successes_win_it_back():
    t = FakeTime()
    pacer = Pacer(10, clock=t.clock, sleep=t.sleep)
    full = pacer.rate
    assert full == pytest.approx(10 / MARGIN)
    pacer.slow_down(t.now)
    assert pacer.rate == pytest.approx(full / 2)
    await pacer.wait()
    before = t.now
    await pacer.wait()
    assert t.now - before == pytest.approx(2 / full)  # spaced at half the rate
    for _ in range(RECOVERY_CALLS // 2 - 1):
        pacer.succeeded()
    assert full / 2 < pacer.rate < full
    pacer.succeeded()
    assert pacer.rate == pytest.approx(full)
    pacer.succeeded()
    assert pacer.rate == pytest.approx(full)  # never above the configured rate


def test_repeated_refusals_have_a_floor():
    clock = iter(range(100))
    pacer = Pacer(10, clock=lambda: float(next(clock)))
    for n in range(20):
        pacer.slow_down(float(n))
        pacer.slow_down(n - 0.5)  # started before the last slow-down: no news
    assert pacer.rate == pytest.approx(10 / MARGIN / MAX_SLOWDOWN)


async def test_refusals_of_calls_paced_at_the_old_rate_halve_it_once():
    t = FakeTime()
    pacer = Pacer(10, clock=t.clock, sleep=t.sleep)
    starts = [await pacer.wait() for _ in range(4)]  # all in flight together
    for started in starts:  # ...and all refused
        pacer.slow_down(started)
    assert pacer.rate == pytest.approx(10 / MARGIN / 2)
    pacer.slow_down(await pacer.wait())  # a call paced at the new rate: news
    assert pacer.rate == pytest.approx(10 / MARGIN / 4)


def test_rps_must_be_positive():
    with pytest.raises(ValueError):
        Pacer(0)


async def test_the_next_turn_counts_from_the_previous_send():
    """A send that slips after its turn (the loop ran other tasks) pushes the next turn
    back: the provider sees the sends, not the turns."""
    t = FakeTime()
    pacer = Pacer(10, clock=t.clock, sleep=t.sleep)
    async with pacer.turn() as first:
        t.now += 0.07  # other tasks ran before this request went out
        first.sent()
        sent_at = t.now
    assert await pacer.wait() == pytest.approx(sent_at + 0.1 * MARGIN)


async def test_a_turn_never_sent_is_handed_on_after_the_hold_limit():
    """A connect that hangs must not stall the endpoint's other calls."""
    loop = asyncio.get_running_loop()
    pacer = Pacer(1000, hold_max_s=0.05)
    hung = asyncio.Event()

    async def hanging() -> None:
        async with pacer.turn():
            hung.set()
            await asyncio.Event().wait()  # never sent

    task = asyncio.create_task(hanging())
    await hung.wait()
    asked = loop.time()
    await pacer.wait()
    assert 0.04 <= loop.time() - asked < 1.0
    task.cancel()


async def test_the_transport_hands_the_turn_on_when_the_request_is_sent(aiohttp_server):
    """Through a real server answering after 300 ms: the second request arrives one
    interval after the first, not after the first's answer."""
    arrivals: list[float] = []
    loop = asyncio.get_running_loop()

    async def slow(request: web.Request) -> web.Response:
        arrivals.append(loop.time())
        await asyncio.sleep(0.3)
        return web.json_response({"jsonrpc": "2.0", "id": 1, "result": "ok"})

    app = web.Application()
    app.router.add_post("/", slow)
    server = await aiohttp_server(app)
    transport = UpstreamTransport(
        make_settings(UPSTREAM_CONCURRENCY=2),
        breaker=CircuitBreaker(),
        pacers={"rpc": Pacer(20, hold_max_s=5.0)},
    )
    url = str(server.make_url("/"))
    try:
        await asyncio.gather(*(transport.post("rpc", url, {"n": n}) for n in range(2)))
    finally:
        await transport.close()
    gap = arrivals[1] - arrivals[0]
    assert 0.05 * MARGIN - 0.005 <= gap < 0.25
