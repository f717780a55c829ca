"""Client-side pacing: starts at least 1/rps apart, in order, under concurrency."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from walletd.pacing import MARGIN, Pacer


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


def test_rps_must_be_positive():
    with pytest.raises(ValueError):
        Pacer(0)
