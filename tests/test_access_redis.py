"""Several walletd processes on one real Redis: one key store, one window, one stream cap."""

from __future__ import annotations

import asyncio
import json
import logging
import time

from tests.fakes import ListSource, demo_pages
from tests.sse_client import read_events
from tests.support import WALLET
from tests.waiting import eventually
from walletd.appkeys import KEYSTORE, LIMITS
from walletd.auth.keys import KeyHasher

STREAM = f"/v4/wallet/{WALLET}/stream"


SECRET = "r" * 32


def env_for(url: str, prefix: str, **extra: object) -> dict[str, object]:
    return {
        "API_KEY_REQUIRED": "true",
        "SECRET_KEY": SECRET,
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


# Key records in Redis are untrusted input (SPEC §3): whoever can write to Redis must not
# be able to grant a scope, lift an expiry or un-revoke a key.


async def tamper(redis_client, prefix: str, key: str, **changes: object) -> None:
    """Edit the record of `key` in Redis as an attacker with write access would."""
    digest = KeyHasher(SECRET).digest(key)
    name = f"{prefix}key:{digest}"
    record = json.loads(await redis_client.get(name))
    record.update(changes)
    await redis_client.set(name, json.dumps(record))


async def metrics_status(client, key: str) -> tuple[int, str | None]:
    await client.server.app[KEYSTORE].refresh()  # no cached answer hides the edit
    resp = await client.get("/metrics", headers={"X-API-Key": key})
    body = await resp.json() if resp.content_type == "application/json" else {}
    return resp.status, body.get("code")


async def test_a_scope_added_in_redis_grants_nothing(serve, redis_url, redis_prefix, redis_client):
    client = await serve(**env_for(redis_url, redis_prefix))
    key, _ = await client.server.app[KEYSTORE].create("stream only", ["stream"], None)
    assert await metrics_status(client, key) == (403, "FORBIDDEN")
    await tamper(redis_client, redis_prefix, key, scopes=["stream", "metrics", "admin"])
    assert await metrics_status(client, key) == (401, "INVALID_API_KEY")


async def test_a_revocation_undone_in_redis_stays_revoked(
    serve, redis_url, redis_prefix, redis_client
):
    client = await serve(**env_for(redis_url, redis_prefix))
    store = client.server.app[KEYSTORE]
    key, record = await store.create("leaked", ["metrics"], None)
    await store.revoke(record.id)
    assert await metrics_status(client, key) == (401, "INVALID_API_KEY")
    await tamper(redis_client, redis_prefix, key, revoked=False)
    assert await metrics_status(client, key) == (401, "INVALID_API_KEY")


async def test_an_expiry_lifted_in_redis_stays_expired(
    serve, redis_url, redis_prefix, redis_client
):
    client = await serve(**env_for(redis_url, redis_prefix))
    store = client.server.app[KEYSTORE]
    key, record = await store.create("old", ["metrics"], time.time() + 3600)
    await store.rotate(record.id, overlap_s=0)  # the old key expires now
    assert await metrics_status(client, key) == (401, "INVALID_API_KEY")
    await tamper(redis_client, redis_prefix, key, expires_at=None)
    assert await metrics_status(client, key) == (401, "INVALID_API_KEY")


async def test_a_record_copied_under_another_key_grants_nothing(
    serve, redis_url, redis_prefix, redis_client
):
    client = await serve(**env_for(redis_url, redis_prefix))
    store = client.server.app[KEYSTORE]
    admin_key, _ = await store.create("admin", ["stream", "metrics", "admin"], None)
    low_key, _ = await store.create("low", ["stream"], None)
    hasher = KeyHasher(SECRET)
    admin_raw = await redis_client.get(f"{redis_prefix}key:{hasher.digest(admin_key)}")
    copied = {**json.loads(admin_raw), "digest": hasher.digest(low_key)}
    await redis_client.set(f"{redis_prefix}key:{hasher.digest(low_key)}", json.dumps(copied))
    assert await metrics_status(client, low_key) == (401, "INVALID_API_KEY")
    assert await metrics_status(client, admin_key) == (200, None)  # the original still works


async def test_an_unsigned_record_is_refused_with_a_hint_to_resign(
    serve, redis_url, redis_prefix, redis_client, caplog
):
    """A record written before records were signed (or with its signature stripped)."""
    client = await serve(**env_for(redis_url, redis_prefix))
    key, _ = await client.server.app[KEYSTORE].create("before", ["metrics"], None)
    digest = KeyHasher(SECRET).digest(key)
    record = json.loads(await redis_client.get(f"{redis_prefix}key:{digest}"))
    record.pop("sig", None)
    record.pop("replaced_by", None)
    await redis_client.set(f"{redis_prefix}key:{digest}", json.dumps(record))
    with caplog.at_level(logging.ERROR, logger="walletd.keys"):
        assert await metrics_status(client, key) == (401, "INVALID_API_KEY")
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "walletd.keys"]
    assert errors and "walletd keys resign" in errors[0].__dict__.get("error", "")
    assert key not in caplog.text and digest not in caplog.text


async def test_known_keys_get_503_once_their_records_are_too_old(serve, private_redis):
    """KEYSTORE_STALE_MAX=0: during an outage, no cached record is believed."""
    client = await serve(**env_for(private_redis.url, "walletd:", KEYSTORE_STALE_MAX=0))
    key, _ = await client.server.app[KEYSTORE].create("seen", ["metrics"], None)
    assert await metrics_status(client, key) == (200, None)
    private_redis.stop()
    assert await metrics_status(client, key) == (503, "SERVICE_UNAVAILABLE")
    resp = await client.get("/metrics", headers={"X-API-Key": key})
    assert resp.status == 503 and int(resp.headers["Retry-After"]) > 0
    ready = await client.get("/ready")
    assert ready.status == 200
    assert "keystore_stale" in (await ready.json())["reasons"]
