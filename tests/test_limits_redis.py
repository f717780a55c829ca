"""Limits in Redis: one request window and one stream cap shared by every process."""

from __future__ import annotations

import functools

import pytest
import redis.asyncio as redis

from tests.support import StartLimits
from tests.waiting import eventually
from walletd.errors import TooManyStreams


@pytest.fixture
def make_limits(start_limits: StartLimits, redis_url: str) -> StartLimits:
    """Start a `Limits` on the shared Redis (one per simulated process); all closed after."""
    return functools.partial(start_limits, redis_url)


async def redis_now(client: redis.Redis) -> float:
    seconds, micros = await client.time()
    return seconds + micros / 1e6


async def until_redis_time(client: redis.Redis, deadline: float) -> None:
    """Wait until Redis TIME reaches `deadline` (leases and windows run on Redis time)."""

    # Polled: only real time moves Redis TIME, so there is no event to wait on.
    async def reached() -> bool:
        return await redis_now(client) >= deadline

    await eventually(reached, every_s=0.05, what="Redis TIME at the deadline")


async def test_redis_hit_counts_in_redis_and_refuses_over_the_limit(
    make_limits, redis_client, redis_prefix
):
    limits = await make_limits(rate_limit_requests=5, rate_limit_window_s=60)
    assert limits.backend == "redis" and not limits.degraded
    verdicts = [await limits.hit("key:a") for _ in range(5)]
    assert [v.remaining for v in verdicts] == [4, 3, 2, 1, 0]
    assert all(v.allowed and v.limit == 5 and v.retry_after_s is None for v in verdicts)
    assert [v.reset_s for v in verdicts[:4]] == [0.0] * 4
    assert 59 < verdicts[4].reset_s <= 60

    refused = await limits.hit("key:a")
    assert (refused.allowed, refused.remaining) == (False, 0)
    assert refused.retry_after_s == 60  # ceil of just under 60 s
    key = f"{redis_prefix}rl:key:a"
    assert await redis_client.zcard(key) == 5  # the refused request was not counted
    assert 59_000 < await redis_client.pttl(key) <= 60_000  # the log expires with the window
    assert (await limits.hit("key:b")).remaining == 4  # subjects are independent


async def test_redis_retry_after_is_exact_for_a_part_filled_window(
    make_limits, redis_client, redis_prefix
):
    limits = await make_limits(rate_limit_requests=3, rate_limit_window_s=60)
    key = f"{redis_prefix}rl:key:a"
    arrived = round((await redis_now(redis_client) - 30.2) * 1e6)  # three requests 30.2 s ago
    await redis_client.zadd(key, {"old1": arrived, "old2": arrived + 1, "old3": arrived + 2})
    refused = await limits.hit("key:a")
    assert not refused.allowed
    assert 29.0 < refused.reset_s <= 29.8  # they leave the window 29.8 s after they came
    assert refused.retry_after_s == 30


async def test_redis_allows_a_retry_exactly_at_retry_after(make_limits, redis_client):
    limits = await make_limits(rate_limit_requests=2, rate_limit_window_s=1)
    assert (await limits.hit("key:a")).allowed
    assert (await limits.hit("key:a")).allowed
    refused = await limits.hit("key:a")
    seen_at = await redis_now(redis_client)  # at or after the refusal
    assert not refused.allowed and refused.retry_after_s == 1
    await until_redis_time(redis_client, seen_at + refused.retry_after_s)
    assert (await limits.hit("key:a")).allowed


async def test_redis_refused_requests_are_not_counted(make_limits, redis_client, redis_prefix):
    limits = await make_limits(rate_limit_requests=3, rate_limit_window_s=60)
    for _ in range(3):
        await limits.hit("key:a")
    refused = [await limits.hit("key:a") for _ in range(20)]
    assert not any(v.allowed for v in refused)
    assert await redis_client.zcard(f"{redis_prefix}rl:key:a") == 3


async def test_two_processes_share_one_request_limit(make_limits):
    first = await make_limits(rate_limit_requests=10)
    second = await make_limits(rate_limit_requests=10)
    for _ in range(5):
        assert (await first.hit("key:a")).allowed
        assert (await second.hit("key:a")).allowed
    assert not (await first.hit("key:a")).allowed
    assert not (await second.hit("key:a")).allowed


async def test_hit_survives_a_script_flush(make_limits, redis_client):
    limits = await make_limits(rate_limit_requests=3)
    assert (await limits.hit("key:a")).remaining == 2
    await redis_client.script_flush()
    assert (await limits.hit("key:a")).remaining == 1
    assert limits.backend == "redis"


async def test_two_processes_share_one_stream_cap(make_limits, redis_client, redis_prefix):
    first = await make_limits(rate_limit_streaming_connections=3)
    second = await make_limits(rate_limit_streaming_connections=3)
    one = await first.acquire_stream("key:a", "s1")
    await first.acquire_stream("key:a", "s2")
    await second.acquire_stream("key:a", "s3")
    with pytest.raises(TooManyStreams) as refused:
        await second.acquire_stream("key:a", "s4")
    assert refused.value.retry_after == 10  # ceil(30 s / 3): the lease refresh period
    key = f"{redis_prefix}streams:key:a"
    assert await redis_client.zcard(key) == 3
    assert 29_000 < await redis_client.pttl(key) <= 30_000

    await one.release()
    await one.release()  # harmless: frees one slot, once
    assert await redis_client.zcard(key) == 2
    await second.acquire_stream("key:a", "s4")
    with pytest.raises(TooManyStreams):
        await first.acquire_stream("key:a", "s5")
    await first.acquire_stream("key:b", "s5")  # another subject, its own cap


async def test_a_vanished_process_frees_its_slots_within_the_ttl(make_limits, redis_client):
    crashed = await make_limits(rate_limit_streaming_connections=1, stream_lease_ttl_s=1)
    other = await make_limits(rate_limit_streaming_connections=1, stream_lease_ttl_s=1)
    await crashed.acquire_stream("key:a", "s1")
    await crashed.close()  # gone without releasing: its refresher stops
    gone_at = await redis_now(redis_client)
    with pytest.raises(TooManyStreams):
        await other.acquire_stream("key:a", "s2")

    async def acquired() -> bool:
        try:
            await other.acquire_stream("key:a", "s2")
        except TooManyStreams:
            return False
        return True

    await eventually(acquired, within_s=5, every_s=0.05, what="the lease lapsed")
    assert await redis_now(redis_client) - gone_at <= 1.0 + 0.5  # the TTL, plus this loop's step


async def test_the_refresher_keeps_a_live_lease_beyond_several_ttls(
    make_limits, redis_client, redis_prefix
):
    owner = await make_limits(rate_limit_streaming_connections=1, stream_lease_ttl_s=1)
    other = await make_limits(rate_limit_streaming_connections=1, stream_lease_ttl_s=1)
    lease = await owner.acquire_stream("key:a", "s1")
    deadline = await redis_now(redis_client) + 3.5  # three and a half TTLs
    await until_redis_time(redis_client, deadline)
    with pytest.raises(TooManyStreams):
        await other.acquire_stream("key:a", "s2")
    expiry_ms = await redis_client.zscore(f"{redis_prefix}streams:key:a", "s1")
    assert expiry_ms is not None and expiry_ms / 1000 > await redis_now(redis_client)
    await lease.release()
    await other.acquire_stream("key:a", "s2")
