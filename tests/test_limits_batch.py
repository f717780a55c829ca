"""Window checks in batches: one round trip for many requests, each judged as if alone.

Redis's replies are untrusted: a check Redis refuses, or a reply the script cannot have
sent, moves that check to memory (a typed RedisError, as for an outage), never a 500.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.hostile_redis import HostileRedis
from tests.redis_server import RedisServer
from tests.support import WALLET, StartLimits, log_messages
from walletd.limits.batch import LimiterReplyError, WindowBatcher, parse
from walletd.ops.redis import connect

STREAM = f"/v4/wallet/{WALLET}/stream"


@pytest.fixture
def events(caplog: pytest.LogCaptureFixture) -> Callable[[str], list[logging.LogRecord]]:
    return log_messages(caplog, "walletd.limits")


@pytest.fixture
async def hostile() -> AsyncIterator[HostileRedis]:
    server = HostileRedis(b"+OK\r\n")
    await server.start()
    yield server
    await server.close()


async def test_concurrent_checks_share_one_script_call_in_arrival_order(
    start_limits: StartLimits, private_redis: RedisServer, redis_prefix: str
) -> None:
    limits = await start_limits(private_redis.url, rate_limit_requests=5, rate_limit_window_s=60)
    assert (await limits.auth_window("10.0.0.1")).allowed  # script loaded, connection open
    client = connect(private_redis.url)
    try:
        await client.config_resetstat()
        hits = asyncio.gather(*(limits.hit("key:a") for _ in range(12)))
        window, verdicts = await asyncio.gather(limits.auth_window("10.0.0.1"), hits)
        stats = await client.info("commandstats")
        logged = await client.zcard(f"{redis_prefix}rl:key:a")
    finally:
        await client.aclose()
    assert stats["cmdstat_evalsha"]["calls"] == 1
    assert [v.allowed for v in verdicts] == [True] * 5 + [False] * 7
    assert [v.remaining for v in verdicts] == [4, 3, 2, 1, 0] + [0] * 7
    assert all(v.retry_after_s == 60 for v in verdicts[5:])
    assert window.allowed and logged == 5 and limits.backend == "redis"


async def test_a_check_redis_refuses_falls_back_alone(
    start_limits: StartLimits, private_redis: RedisServer, redis_prefix: str, events
) -> None:
    limits = await start_limits(private_redis.url, rate_limit_requests=5, probe_interval_s=60)
    client = connect(private_redis.url)
    try:
        await client.set(f"{redis_prefix}rl:key:bad", "not a window")  # WRONGTYPE for a ZSET
        good, bad, after = await asyncio.gather(
            limits.hit("key:good"), limits.hit("key:bad"), limits.hit("key:good")
        )
        logged = await client.zcard(f"{redis_prefix}rl:key:good")
    finally:
        await client.aclose()
    assert (good.remaining, after.remaining, logged) == (4, 3, 2)  # its neighbours: Redis
    assert bad.allowed and bad.remaining == 4  # counted in memory
    assert limits.degraded
    assert [r.error for r in events("redis_unreachable")] == ["LimiterReplyError"]


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (b"*2\r\n:1\r\n:1\r\n", "LimiterReplyError"),  # too short
        (b"*3\r\n:1\r\n$1\r\n1\r\n:0\r\n", "LimiterReplyError"),  # a string among integers
        (b":1\r\n", "LimiterReplyError"),  # not a list
        (b"$-1\r\n", "LimiterReplyError"),  # nil
        (b"*3\r\n*0\r\n:1\r\n:0\r\n", "LimiterReplyError"),  # a list among integers
        (b"-ERR no such script\r\n", "ResponseError"),
    ],
)
async def test_a_malformed_reply_moves_the_check_to_memory(
    start_limits: StartLimits, hostile: HostileRedis, reply: bytes, error: str, events
) -> None:
    hostile.script_reply = reply
    limits = await start_limits(hostile.url, rate_limit_requests=5, probe_interval_s=60)
    verdict = await asyncio.wait_for(limits.hit("key:a"), 5)
    assert verdict.allowed and verdict.remaining == 4  # from memory
    assert hostile.script_calls >= 1 and limits.degraded
    assert [r.error for r in events("redis_unreachable")] == [error]


async def test_a_malformed_reply_is_no_500(serve, hostile: HostileRedis) -> None:
    hostile.script_reply = b"*1\r\n$4\r\nevil\r\n"
    client = await serve(REDIS_URL=hostile.url, RATE_LIMIT_REQUESTS=5)
    resp = await client.get(STREAM, params={"limit": "x"})
    assert resp.status == 400, await resp.text()
    assert resp.headers["RateLimit-Remaining"] == "4"  # counted, in memory
    assert hostile.script_calls >= 1


async def test_a_hit_racing_close_still_gets_a_verdict(
    start_limits: StartLimits, private_redis: RedisServer
) -> None:
    limits = await start_limits(private_redis.url, rate_limit_requests=5)
    queued = asyncio.create_task(limits.hit("key:a"))
    await asyncio.sleep(0)  # queued; close() stops the tasks meanwhile
    await limits.close()
    verdict = await asyncio.wait_for(queued, 5)
    assert verdict.allowed and verdict.remaining == 4


async def test_checks_queued_at_close_or_after_fail_as_redis_errors(
    private_redis: RedisServer, redis_prefix: str
) -> None:
    client = connect(private_redis.url)
    try:
        batcher = WindowBatcher(client, 60_000_000)
        queued = batcher.check(f"{redis_prefix}rl:key:a", "h", 5, "m1")
        batcher.close()  # before its sender ever ran
        late = batcher.check(f"{redis_prefix}rl:key:a", "h", 5, "m2")
        for future in (queued, late):
            with pytest.raises(RedisConnectionError):
                await asyncio.wait_for(future, 5)
        assert await client.exists(f"{redis_prefix}rl:key:a") == 0
    finally:
        await client.aclose()


def test_parse_accepts_only_three_integers_per_check() -> None:
    assert parse([1, 1, 0, 0, 5, 1_000_000], 2) == [(1, 1, 0), (0, 5, 1_000_000)]
    for reply in (
        [1, 1, 0],
        [1, 1, 0, 0, 5],
        [1, 1, True, 0, 5, 1],
        None,
        b"1",
        (1, 1, 0, 0, 5, 1),
    ):
        with pytest.raises(LimiterReplyError):
            parse(reply, 2)


async def test_a_batch_in_flight_at_close_fails_as_a_redis_error(
    private_redis: RedisServer, redis_prefix: str
) -> None:
    client, admin = connect(private_redis.url), connect(private_redis.url)
    try:
        batcher = WindowBatcher(client, 60_000_000)
        await batcher.check(f"{redis_prefix}rl:key:a", "p", 5)  # script loaded, connected
        await admin.client_pause(300, all=True)  # Redis holds the next batch's answer
        in_flight = batcher.check(f"{redis_prefix}rl:key:a", "h", 5, "m1")
        await asyncio.sleep(0.05)  # sent, unanswered
        batcher.close()
        with pytest.raises(RedisConnectionError):
            await asyncio.wait_for(in_flight, 5)
    finally:
        await client.aclose()
        await admin.aclose()
