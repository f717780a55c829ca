"""Several walletd processes on one real Redis: one key store, one window, one stream cap."""

from __future__ import annotations

import asyncio

from conftest import WALLET
from fakes import ListSource, demo_pages
from sse_client import read_events
from waiting import eventually

from walletd.appkeys import KEYSTORE, LIMITS

STREAM = f"/v4/wallet/{WALLET}/stream"


def env_for(url: str, prefix: str, **extra: object) -> dict[str, object]:
    return {
        "API_KEY_REQUIRED": "true",
        "SECRET_KEY": "r" * 32,
        "KEYSTORE": "redis",
        "REDIS_URL": url,
        "REDIS_PREFIX": prefix,
        **extra,
    }


async def held_source() -> ListSource:
    pages = await demo_pages(WALLET, page_size=30)
    return ListSource.from_pages(pages, gates={1: asyncio.Event()})


async def test_two_instances_share_one_window_and_one_key_store(serve, redis_url, redis_prefix):
    env = env_for(redis_url, redis_prefix, RATE_LIMIT_REQUESTS=6)
    a, b = await serve(**env), await serve(**env)
    key, _ = await a.server.app[KEYSTORE].create("shared", ["stream"], None)
    headers = {"X-API-Key": key}
    statuses = []
    for client in (a, b, a, b, a, b, a, b):
        resp = await client.get(STREAM, headers=headers, params={"limit": "x"})
        statuses.append(resp.status)
    assert statuses == [400] * 6 + [429, 429]  # six in all, whichever instance counted
    assert a.server.app[LIMITS].backend == "redis"


async def test_two_instances_share_one_stream_cap(serve, redis_url, redis_prefix):
    env = env_for(redis_url, redis_prefix, RATE_LIMIT_STREAMING_CONNECTIONS=2)
    a = await serve(source=await held_source(), **env)
    b = await serve(source=await held_source(), **env)
    key, _ = await a.server.app[KEYSTORE].create("capped", ["stream"], None)
    headers = {"X-API-Key": key}
    held = [await a.get(STREAM, headers=headers), await b.get(STREAM, headers=headers)]
    for resp in held:
        assert resp.status == 200
        await read_events(resp, 2)
    for client in (a, b):
        refused = await client.get(STREAM, headers=headers)
        assert refused.status == 429
        assert (await refused.json())["code"] == "TOO_MANY_STREAMS"
    held.pop().close()  # the stream on b ends: a may open one

    async def opened() -> bool:
        async with a.get(STREAM, headers=headers) as resp:
            return resp.status == 200

    await eventually(opened, within_s=5, every_s=0.05, what="the slot freed")
    for resp in held:
        resp.close()


async def test_a_redis_outage_degrades_to_memory_and_recovers(serve, private_redis):
    env = env_for(private_redis.url, "walletd:", RATE_LIMIT_REQUESTS=1000)
    client = await serve(**env)
    key, _ = await client.server.app[KEYSTORE].create("outage", ["stream"], None)
    headers = {"X-API-Key": key}
    assert (await client.get(STREAM, headers=headers, params={"limit": "x"})).status == 400
    private_redis.stop()
    # A known key keeps working, counted in memory; /ready says degraded, not 503.
    resp = await client.get(STREAM, headers=headers, params={"limit": "x"})
    assert resp.status == 400 and "RateLimit-Remaining" in resp.headers
    ready = await client.get("/ready")
    assert ready.status == 200
    assert await ready.json() == {"status": "degraded", "reasons": ["redis_unreachable"]}
    private_redis.start()

    async def back_on_redis() -> bool:
        async with client.get("/ready") as resp:
            return bool((await resp.json())["status"] == "ok")

    await eventually(back_on_redis, every_s=0.1, what="the return to Redis")
    assert client.server.app[LIMITS].backend == "redis"
    assert (await client.get(STREAM, headers=headers, params={"limit": "x"})).status == 400
