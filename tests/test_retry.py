"""Upstream retries: full-jitter backoff, Retry-After, bounded attempts and deadline."""

from __future__ import annotations

import asyncio

import pytest

from walletd.retry import RetryPolicy, UpstreamFailure, parse_retry_after, with_retries


class FakeTime:
    """A clock that only `sleep` moves; records every wait."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


class Script:
    """An upstream call that fails as scripted, then succeeds."""

    def __init__(self, *failures: UpstreamFailure) -> None:
        self.failures = list(failures)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


def busy(retry_after: float | None = None) -> UpstreamFailure:
    return UpstreamFailure("429", retryable=True, retry_after_s=retry_after, status=429)


async def run(script: Script, policy: RetryPolicy, t: FakeTime, rng=lambda: 1.0, **kw) -> str:
    return await with_retries(script, policy, rng=rng, clock=t.clock, sleep=t.sleep, **kw)


async def test_backoff_is_exponential_full_jitter_capped():
    policy = RetryPolicy(max_retries=6, deadline_s=1000, base_s=0.5, cap_s=3)
    t = FakeTime()
    assert await run(Script(*[busy()] * 6), policy, t, rng=lambda: 0.999) == "ok"
    assert t.waits == pytest.approx([0.4995, 0.999, 1.998, 2.997, 2.997, 2.997])
    jittered = FakeTime()
    await run(Script(*[busy()] * 3), policy, jittered, rng=lambda: 0.25)
    assert jittered.waits == pytest.approx([0.125, 0.25, 0.5])


async def test_retry_after_is_a_lower_bound_on_the_wait():
    t = FakeTime()
    await run(Script(busy(retry_after=7), busy()), RetryPolicy(), t, rng=lambda: 0.1)
    assert t.waits == pytest.approx([7.0, 0.1])


async def test_gives_up_after_max_retries():
    script, t = Script(*[busy()] * 10), FakeTime()
    with pytest.raises(UpstreamFailure):
        await run(script, RetryPolicy(max_retries=3, deadline_s=1000), t)
    assert script.calls == 4


async def test_never_waits_past_the_deadline():
    script, t = Script(busy(), busy(retry_after=30)), FakeTime()
    with pytest.raises(UpstreamFailure) as caught:
        await run(script, RetryPolicy(deadline_s=20), t, rng=lambda: 0.5)
    assert caught.value.retry_after_s == 30
    assert script.calls == 2 and t.now < 20


async def test_configuration_errors_are_not_retried():
    script, t = Script(UpstreamFailure("401", retryable=False, status=401)), FakeTime()
    with pytest.raises(UpstreamFailure):
        await run(script, RetryPolicy(), t)
    assert script.calls == 1 and t.waits == []


async def test_other_exceptions_and_cancellation_pass_through():
    async def broken() -> str:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await with_retries(broken, RetryPolicy(), sleep=FakeTime().sleep)

    started = asyncio.Event()

    async def hangs() -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    task = asyncio.create_task(with_retries(hangs, RetryPolicy()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_each_retry_is_reported():
    seen: list[tuple[int, float, int | None]] = []
    await run(
        Script(busy(retry_after=2), busy()),
        RetryPolicy(),
        FakeTime(),
        rng=lambda: 0.5,
        on_retry=lambda n, delay, exc: seen.append((n, delay, exc.status)),
    )
    assert seen == [(1, 2.0, 429), (2, 0.5, 429)]


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("12", 12.0),
        (" 0 ", 0.0),
        ("Thu, 01 Jan 1970 00:01:40 GMT", 60.0),  # 100 s after epoch, now = 40
        ("Thu, 01 Jan 1970 00:00:10 GMT", 0.0),  # in the past
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        (None, None),
    ],
)
def test_parse_retry_after(header, seconds):
    assert parse_retry_after(header, now=40.0) == seconds
