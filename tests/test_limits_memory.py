"""In-memory limits: an exact sliding window per subject and a concurrent-stream cap."""

from __future__ import annotations

import math

import pytest

from tests.clocks import FakeClock
from walletd.config import Settings
from walletd.errors import TooManyStreams
from walletd.limits import Limits, Verdict
from walletd.limits.memory import MemoryRequestLimiter, MemoryStreamCap


@pytest.fixture
async def limits(clock: FakeClock) -> Limits:
    limits = Limits(Settings(), clock=clock)  # SPEC defaults: 50 per 60 s, 10 streams
    await limits.start()
    return limits


async def test_limits_without_redis_run_on_memory_and_are_not_degraded(limits):
    assert limits.backend == "memory"
    assert not limits.degraded
    await limits.close()  # nothing to stop: must not fail


async def test_on_memory_calls_are_answered_at_once_and_count_as_awaited_ones(limits, clock):
    """`hit_now` and `auth_window_now` answer without an await while no Redis is in use;
    they count in the same windows as `hit` and `auth_failed`."""
    first = answered(limits.hit_now("key:a"))
    assert first.allowed and first.remaining == 49
    assert (await limits.hit("key:a")).remaining == 48
    assert answered(limits.hit_now("key:a")).remaining == 47
    assert answered(limits.hit_now("key:b")).remaining == 49

    assert limits.auth_window_now("10.0.0.1") == await limits.auth_window("10.0.0.1")
    failures = Settings().auth_failure_limit
    for _ in range(failures - 1):
        await limits.auth_failed("10.0.0.1")
    assert answered(limits.auth_window_now("10.0.0.1")).allowed
    clock.advance(0.5)
    await limits.auth_failed("10.0.0.1")
    refused = answered(limits.auth_window_now("10.0.0.1"))
    assert not refused.allowed
    assert refused.retry_after_s == 60  # ceil(59.5): the first failure leaves the window
    assert refused == await limits.auth_window("10.0.0.1")
    assert answered(limits.auth_window_now("10.0.0.2")).allowed
    # Failed authentications and requests are windows apart, whatever the subject.
    assert answered(limits.hit_now("10.0.0.1")).remaining == 49


def answered(verdict: Verdict | None) -> Verdict:
    assert verdict is not None, "on memory, a call is answered at once"
    return verdict


async def test_hit_refuses_the_51st_request_with_exact_retry_after(limits, clock):
    start = clock.now
    assert (await limits.hit("key:a")).allowed
    clock.advance(10.25)
    for _ in range(49):
        assert (await limits.hit("key:a")).allowed
    clock.advance(20.25)  # 30.5 s after the first request
    refused = await limits.hit("key:a")
    assert refused.allowed is False
    assert refused.remaining == 0
    assert refused.reset_s == pytest.approx(29.5)
    assert refused.retry_after_s == 30  # ceil(29.5)

    clock.now = start + 60 - 0.001  # the first request is still in the window
    assert (await limits.hit("key:a")).retry_after_s == 1
    clock.now = start + 60  # exactly one window after it: it has left (t - window, t]
    again = await limits.hit("key:a")
    assert again.allowed
    assert again.remaining == 0  # the 49 at +10.25 and this one
    assert again.reset_s == pytest.approx(10.25)
    assert not (await limits.hit("key:a")).allowed


async def test_retry_after_is_the_first_whole_second_that_is_allowed(clock):
    for offset in (0.0, 0.1, 0.333333, 0.5, 0.999999, 7.25, 59.0):
        clock.now = 123_456.789 + offset * 1000
        limiter = MemoryRequestLimiter(3, 60, clock)
        for step in (0.0, offset / 2, 13.7):  # all three within one window
            clock.advance(step)
            assert limiter.hit("ip:10.0.0.1").allowed
        refused_at = clock.now
        refused = limiter.hit("ip:10.0.0.1")
        assert refused.retry_after_s is not None
        assert 0 <= refused.retry_after_s - refused.reset_s < 1, offset
        clock.now = refused_at + refused.reset_s - 0.001
        assert not limiter.hit("ip:10.0.0.1").allowed, offset  # no room before reset_s
        clock.now = refused_at + refused.retry_after_s
        assert limiter.hit("ip:10.0.0.1").allowed, offset  # a retry right then succeeds


async def test_hit_reports_limit_remaining_and_reset_on_each_request(clock):
    limits = Limits(Settings(rate_limit_requests=4, rate_limit_window_s=10), clock=clock)
    seen = []
    for _ in range(4):
        verdict = await limits.hit("key:a")
        seen.append((verdict.allowed, verdict.limit, verdict.remaining, verdict.reset_s))
        clock.advance(1)
    assert seen == [
        (True, 4, 3, 0.0),
        (True, 4, 2, 0.0),
        (True, 4, 1, 0.0),
        (True, 4, 0, pytest.approx(7.0)),  # the first leaves the window 10 s after it came
    ]
    refused = await limits.hit("key:a")
    assert (refused.allowed, refused.limit, refused.remaining) == (False, 4, 0)
    assert refused.reset_s == pytest.approx(6.0)
    assert refused.retry_after_s == 6


async def test_refused_requests_are_not_counted(clock):
    limiter = MemoryRequestLimiter(50, 60, clock)
    for _ in range(50):
        assert limiter.hit("key:a").allowed
    clock.advance(30)
    for _ in range(100):
        assert not limiter.hit("key:a").allowed
    clock.advance(30)  # the 50 accepted ones have left; refused ones never entered
    assert all(limiter.hit("key:a").allowed for _ in range(50))
    assert not limiter.hit("key:a").allowed


async def test_subjects_are_limited_independently(limits):
    for _ in range(50):
        assert (await limits.hit("key:a")).allowed
    assert not (await limits.hit("key:a")).allowed
    other = await limits.hit("ip:203.0.113.7")
    assert other.allowed and other.remaining == 49


async def test_the_11th_stream_is_refused_until_one_is_released(limits):
    leases = [await limits.acquire_stream("key:a", f"s{i}") for i in range(10)]
    with pytest.raises(TooManyStreams) as refused:
        await limits.acquire_stream("key:a", "s10")
    assert refused.value.retry_after == math.ceil(30 / 3)  # the lease refresh period
    assert refused.value.status == 429

    await leases[3].release()
    lease = await limits.acquire_stream("key:a", "s10")
    with pytest.raises(TooManyStreams):
        await limits.acquire_stream("key:a", "s11")
    other = await limits.acquire_stream("key:b", "s11")  # another subject, its own cap
    for held in (*leases, lease, other):
        await held.release()


async def test_double_release_frees_one_slot_only(clock):
    cap = MemoryStreamCap(2, retry_after_s=10)
    first = cap.acquire("key:a", "s1")
    cap.acquire("key:a", "s2")
    await first.release()
    await first.release()
    assert cap.held("key:a") == 1
    cap.acquire("key:a", "s3")
    with pytest.raises(TooManyStreams):
        cap.acquire("key:a", "s4")


async def test_streams_held_on_another_backend_count_against_the_cap():
    cap = MemoryStreamCap(3, retry_after_s=10)
    cap.acquire("key:a", "s1", held_elsewhere=1)
    with pytest.raises(TooManyStreams):
        cap.acquire("key:a", "s2", held_elsewhere=2)
    assert cap.held("key:a") == 1


async def test_memory_is_bounded_by_active_subjects(clock):
    limiter = MemoryRequestLimiter(50, 60, clock)
    for i in range(1000):
        limiter.hit(f"ip:10.0.{i // 256}.{i % 256}")
    assert len(limiter) == 1000
    clock.advance(60)
    limiter.hit("key:still-active")
    assert len(limiter) == 1  # every idle subject was dropped

    cap = MemoryStreamCap(10, retry_after_s=10)
    leases = [cap.acquire(f"key:{i}", "s") for i in range(100)]
    for lease in leases:
        await lease.release()
    assert len(cap) == 0
    small = MemoryStreamCap(1, retry_after_s=10)
    with pytest.raises(TooManyStreams):
        small.acquire("key:x", "s", held_elsewhere=1)
    assert len(small) == 0  # a refusal leaves nothing behind
