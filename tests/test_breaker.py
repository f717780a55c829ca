"""The upstream circuit breaker: 3 failures within 60 s open it for 30 s, one probe decides."""

from __future__ import annotations

import asyncio

import pytest

from tests.clocks import FakeClock
from walletd.errors import ServiceUnavailable
from walletd.upstream.breaker import CircuitBreaker, CircuitState


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(0.0)


@pytest.fixture
def breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker(failures=3, window_s=60, open_s=30, clock=clock)


async def fail(breaker: CircuitBreaker) -> None:
    with pytest.raises(RuntimeError):
        async with breaker.call():
            raise RuntimeError("upstream 502 after retries")


async def trip(breaker: CircuitBreaker) -> None:
    """Three failures in a row: enough to open it."""
    for _ in range(3):
        await fail(breaker)


async def succeed(breaker: CircuitBreaker) -> None:
    async with breaker.call():
        pass


async def held(breaker: CircuitBreaker, release: asyncio.Event | None = None) -> asyncio.Task[None]:
    """A call that has entered the breaker and stays inside until `release` is set (with
    none, until cancelled)."""
    entered, hold = asyncio.Event(), release or asyncio.Event()

    async def call() -> None:
        async with breaker.call():
            entered.set()
            await hold.wait()

    task = asyncio.create_task(call())
    await entered.wait()
    return task


async def cancel(task: asyncio.Task[None]) -> None:
    """Cancel a held call; it ends cancelled."""
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_third_failure_within_the_window_opens_it(breaker, clock):
    await fail(breaker)
    clock.advance(30)
    await fail(breaker)
    assert breaker.state is CircuitState.CLOSED
    clock.advance(29)
    await fail(breaker)
    assert breaker.state is CircuitState.OPEN


async def test_failures_spread_over_more_than_the_window_do_not(breaker, clock):
    for _ in range(5):
        await fail(breaker)
        assert breaker.snapshot().recent_failures <= 2  # never three inside 60 s
        clock.advance(31)
    assert breaker.state is CircuitState.CLOSED


async def test_open_circuit_fails_fast_with_time_left(breaker, clock):
    await trip(breaker)
    clock.advance(12.5)
    entered = False
    with pytest.raises(ServiceUnavailable) as caught:
        async with breaker.call():
            entered = True
    assert not entered
    assert caught.value.retry_after == 18  # 17.5 s left, rounded up
    assert breaker.snapshot().retry_after_s == pytest.approx(17.5)


async def test_one_probe_after_the_open_period_closes_it(breaker, clock):
    await trip(breaker)
    clock.advance(30)
    assert breaker.state is CircuitState.HALF_OPEN
    await succeed(breaker)
    assert breaker.state is CircuitState.CLOSED
    assert breaker.snapshot().recent_failures == 0


async def test_a_failed_probe_opens_it_for_a_full_period(breaker, clock):
    await trip(breaker)
    clock.advance(31)
    await fail(breaker)
    assert breaker.state is CircuitState.OPEN
    assert breaker.snapshot().retry_after_s == pytest.approx(30)


async def test_only_one_probe_at_a_time(breaker, clock):
    await trip(breaker)
    clock.advance(30)
    release = asyncio.Event()
    task = await held(breaker, release)  # the probe
    with pytest.raises(ServiceUnavailable):
        await succeed(breaker)
    release.set()
    await task
    assert breaker.state is CircuitState.CLOSED


async def test_cancelled_calls_never_count(breaker, clock):
    for _ in range(5):
        task = await held(breaker)
        await cancel(task)
    assert breaker.state is CircuitState.CLOSED
    assert breaker.snapshot().recent_failures == 0


async def test_a_cancelled_probe_frees_the_probe_slot(breaker, clock):
    await trip(breaker)
    clock.advance(30)
    task = await held(breaker)  # the probe
    await cancel(task)
    await succeed(breaker)  # the next caller may probe
    assert breaker.state is CircuitState.CLOSED


async def test_listeners_see_every_transition(breaker, clock):
    seen: list[CircuitState] = []
    breaker.listeners.append(seen.append)
    await trip(breaker)
    clock.advance(30)
    await succeed(breaker)
    assert seen == [CircuitState.OPEN, CircuitState.CLOSED]


async def test_successes_while_closed_do_not_reset_the_window(breaker, clock):
    await fail(breaker)
    await succeed(breaker)
    await fail(breaker)
    await succeed(breaker)
    await fail(breaker)
    assert breaker.state is CircuitState.OPEN  # 3 failures within 60 s, whatever came between


async def test_a_late_success_of_an_earlier_call_does_not_close_it(breaker, clock):
    release = asyncio.Event()
    task = await held(breaker, release)
    await trip(breaker)
    release.set()
    await task
    assert breaker.state is CircuitState.OPEN
