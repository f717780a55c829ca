"""Redis outages: limits keep answering from memory, say so once, and return to Redis."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.redis_server import RedisServer
from tests.support import StartLimits, log_messages
from tests.waiting import eventually
from walletd.errors import TooManyStreams
from walletd.limits import Limits
from walletd.ops.redis import connect

PROBE_S = 0.05


@pytest.fixture
def make_limits(start_limits: StartLimits, private_redis: RedisServer) -> StartLimits:
    """Start a `Limits` on the private Redis (or at `url`), probing quickly; all closed after."""

    def make(url: str = private_redis.url, **fields: Any) -> Awaitable[Limits]:
        return start_limits(url, probe_interval_s=PROBE_S, **fields)

    return make


@pytest.fixture
def events(caplog: pytest.LogCaptureFixture) -> Callable[[str], list[logging.LogRecord]]:
    return log_messages(caplog, "walletd.limits")


async def recovered(limits: Limits, timeout_s: float = 5.0) -> None:
    """Wait for the probe to see Redis again (it pings on a real timer)."""
    # Polled: the facade has no recovery event to offer, and needs none in production.
    await eventually(lambda: not limits.degraded, within_s=timeout_s, every_s=PROBE_S / 2)


async def zcard(url: str, key: str) -> int:
    client = connect(url)
    try:
        return int(await client.zcard(key))
    finally:
        await client.aclose()


async def test_an_outage_moves_calls_to_memory_then_back_to_redis(
    make_limits, private_redis, redis_prefix, events
):
    # A password in the URL must never reach a log line.
    port_url = private_redis.url.replace("redis://", "redis://default:s3cret-pw@")
    limits = await make_limits(port_url, rate_limit_requests=50)
    for _ in range(5):
        await limits.hit("key:a")
    assert await zcard(private_redis.url, f"{redis_prefix}rl:key:a") == 5

    private_redis.stop()
    verdicts = [await limits.hit("key:a") for _ in range(20)]
    # Memory starts empty: nothing was counted there while Redis was healthy.
    assert [v.remaining for v in verdicts] == list(range(49, 29, -1))
    assert limits.degraded and limits.backend == "memory"
    assert len(events("redis_unreachable")) == 1
    record = events("redis_unreachable")[0]
    assert record.levelno == logging.WARNING
    assert "s3cret" not in repr(record.__dict__)
    assert (record.getMessage(), record.error, record.fallback) == (
        "redis_unreachable",
        "ConnectionError",  # the class only: redis-py's text names the server
        "memory",
    )

    private_redis.start()  # empty: it keeps nothing on disk
    await recovered(limits)
    assert limits.backend == "redis" and not limits.degraded
    assert len(events("redis_recovered")) == 1
    assert (await limits.hit("key:a")).remaining == 49
    assert await zcard(private_redis.url, f"{redis_prefix}rl:key:a") == 1
    assert len(events("redis_unreachable")) == 1


async def test_calls_are_answered_at_once_only_while_they_run_on_memory(
    make_limits, private_redis, redis_prefix
):
    limits = await make_limits(rate_limit_requests=50)
    assert limits.hit_now("key:a") is None  # Redis is up: `hit` must be awaited
    assert limits.auth_window_now("10.0.0.1") is None
    assert (await limits.hit("key:a")).remaining == 49
    assert await zcard(private_redis.url, f"{redis_prefix}rl:key:a") == 1

    private_redis.stop()
    assert (await limits.hit("key:a")).remaining == 49  # notices the outage: memory
    during = limits.hit_now("key:a")
    assert during is not None and during.remaining == 48
    assert limits.auth_window_now("10.0.0.1") == await limits.auth_window("10.0.0.1")

    private_redis.start()
    await recovered(limits)
    assert limits.hit_now("key:a") is None and limits.auth_window_now("10.0.0.1") is None


async def test_no_redis_error_escapes_during_an_outage(make_limits, private_redis, events):
    limits = await make_limits(rate_limit_streaming_connections=2)
    on_redis = await limits.acquire_stream("key:a", "s1")
    private_redis.stop()

    await on_redis.release()  # ZREM fails: logged, not raised; the lease will lapse
    assert len(events("lease_release_failed")) == 1
    assert (await limits.hit("key:a")).allowed
    on_memory = await limits.acquire_stream("key:a", "s2")
    await on_memory.release()
    await on_memory.release()
    assert limits.degraded and len(events("redis_unreachable")) == 1


async def test_a_lease_taken_on_memory_releases_there_after_recovery(make_limits, private_redis):
    limits = await make_limits(rate_limit_streaming_connections=1)
    private_redis.stop()
    lease = await limits.acquire_stream("key:a", "s1")
    assert limits.backend == "memory"
    with pytest.raises(TooManyStreams):
        await limits.acquire_stream("key:a", "s2")

    private_redis.start()
    await recovered(limits)
    await lease.release()  # goes to memory, where it was taken

    private_redis.stop()  # back on memory: the slot must be free there
    second = await limits.acquire_stream("key:a", "s2")
    assert limits.backend == "memory"
    await second.release()


async def test_redis_leases_count_against_the_memory_cap_during_an_outage(
    make_limits, private_redis
):
    limits = await make_limits(rate_limit_streaming_connections=2)
    await limits.acquire_stream("key:a", "s1")  # on Redis
    private_redis.stop()
    await limits.acquire_stream("key:a", "s2")  # on memory
    with pytest.raises(TooManyStreams):
        await limits.acquire_stream("key:a", "s3")  # this process already runs two


async def test_live_leases_are_restored_when_redis_returns_empty(
    make_limits, private_redis, redis_prefix
):
    owner = await make_limits(rate_limit_streaming_connections=1)
    await owner.acquire_stream("key:a", "s1")
    private_redis.stop()
    await owner.hit("key:a")  # notices the outage
    private_redis.start()
    await recovered(owner)
    assert await zcard(private_redis.url, f"{redis_prefix}streams:key:a") == 1

    other = await make_limits(rate_limit_streaming_connections=1)
    with pytest.raises(TooManyStreams):
        await other.acquire_stream("key:a", "s2")


async def test_start_with_redis_down_serves_from_memory_until_it_comes(
    make_limits, private_redis, events
):
    private_redis.stop()
    limits = await make_limits(rate_limit_requests=3)
    assert limits.degraded and limits.backend == "memory"
    assert len(events("redis_unreachable")) == 1
    assert (await limits.hit("key:a")).remaining == 2

    private_redis.start()
    await recovered(limits)
    assert limits.backend == "redis"
    assert (await limits.hit("key:a")).remaining == 2  # a fresh window, in Redis
