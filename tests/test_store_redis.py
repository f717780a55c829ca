"""The Redis key store: signed records, caching, outages, and records edited behind its back."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as redis

from tests.clocks import FakeClock
from tests.keystores import make_redis_store, revoke_and_check
from walletd.auth.format import generate_key
from walletd.auth.keys import KeyHasher, KeyRecord, authenticate
from walletd.auth.store_redis import RedisKeyStore
from walletd.errors import InvalidApiKey, ServiceUnavailable


@pytest.fixture
async def open_redis_store(
    redis_url: str, redis_prefix: str, hasher: KeyHasher, clock: FakeClock
) -> AsyncIterator[Callable[[], RedisKeyStore]]:
    """Open a RedisKeyStore on the test's Redis and prefix, as another process would (its
    answers cached for 2 s, on the test's clock); each is closed after the test."""
    opened: list[RedisKeyStore] = []

    def open_store() -> RedisKeyStore:
        store = make_redis_store(redis_url, redis_prefix, clock=clock, cache_s=2.0)
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        await store.close()


@pytest.fixture
def redis_store(open_redis_store: Callable[[], RedisKeyStore]) -> RedisKeyStore:
    return open_redis_store()


async def test_redis_store_holds_digests_never_keys(
    redis_store: RedisKeyStore, redis_client: redis.Redis, redis_prefix: str, hasher: KeyHasher
) -> None:
    key, record = await redis_store.create("a", ["stream"], None)
    names = [n.decode() async for n in redis_client.scan_iter(match=f"{redis_prefix}*")]
    assert sorted(names) == sorted(
        [f"{redis_prefix}key:{hasher.digest(key)}", f"{redis_prefix}keyids"]
    )
    stored = await redis_client.get(f"{redis_prefix}key:{hasher.digest(key)}")
    assert stored is not None and key.encode() not in stored
    assert json.loads(stored)["id"] == record.id
    digest = hasher.digest(key)
    assert await redis_client.hget(f"{redis_prefix}keyids", record.id) == digest.encode()


async def test_redis_store_caches_answers_for_cache_s(
    redis_store: RedisKeyStore,
    redis_client: redis.Redis,
    redis_prefix: str,
    hasher: KeyHasher,
    clock: FakeClock,
) -> None:
    key, record = await redis_store.create("hot", ["stream"], None)
    other = generate_key()
    assert await redis_store.find(key) == record
    assert await redis_store.find(other) is None
    # Behind the store's back: delete the key, add the other one.
    await redis_client.delete(f"{redis_prefix}key:{hasher.digest(key)}")
    await redis_client.set(f"{redis_prefix}key:{hasher.digest(other)}", b"{}")
    assert await redis_store.find(key) == record  # served from the cache: no round trip
    assert await redis_store.find(other) is None
    clock.advance(2.0)
    assert await redis_store.find(key) is None


async def test_redis_store_revocation_reaches_another_instance_within_cache_s(
    redis_store: RedisKeyStore, open_redis_store: Callable[[], RedisKeyStore], clock: FakeClock
) -> None:
    server = open_redis_store()
    key, record = await redis_store.create("x", ["stream"], None)
    assert (await authenticate(server, key, clock())).id == record.id
    await revoke_and_check(redis_store, server, key, record, clock, after_s=2.0)


async def test_redis_store_revoke_racing_rotate_is_never_lost(
    redis_store: RedisKeyStore, open_redis_store: Callable[[], RedisKeyStore]
) -> None:
    """Rotate rewrites the old record; done as read-then-write, it could undo a revoke."""
    revoker, rotator = open_redis_store(), open_redis_store()
    records = [(await redis_store.create(f"k{i}", ["stream"], None))[1] for i in range(20)]
    outcomes = await asyncio.gather(
        *(revoker.revoke(r.id) for r in records),
        *(rotator.rotate(r.id, 60) for r in records),
        return_exceptions=True,  # a rotate after its revoke is refused: that's fine
    )
    revokes, rotates = outcomes[: len(records)], outcomes[len(records) :]
    assert all(isinstance(r, KeyRecord) for r in revokes)  # every revoke went through
    rotated = [r for r in rotates if not isinstance(r, BaseException)]
    listed = {r.id: r for r in await redis_store.list()}
    assert all(listed[r.id].revoked for r in records)  # ...and none was undone
    assert len(listed) == len(records) + len(rotated)


async def test_redis_store_survives_an_outage_for_keys_it_has_seen(
    private_redis: Any, hasher: KeyHasher, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = make_redis_store(private_redis.url, "walletd:", clock=clock, cache_s=2.0)
    try:
        key, record = await store.create("seen", ["stream"], None)
        assert await store.find(key) == record
        private_redis.stop()
        clock.advance(2.0)
        with caplog.at_level(logging.WARNING, logger="walletd.keys"):
            assert (await authenticate(store, key, clock())).id == record.id
            with pytest.raises(ServiceUnavailable) as unavailable:
                await store.find(generate_key())
            assert (await store.get(record.id)) == record
            clock.advance(2.0)
            assert (await authenticate(store, key, clock())).id == record.id
        assert unavailable.value.retry_after is not None and unavailable.value.retry_after > 0
        outages = [r for r in caplog.records if r.getMessage() == "keystore_unreachable"]
        assert len(outages) == 1

        private_redis.start()  # an empty Redis: it kept nothing on disk
        clock.advance(2.0)
        assert await store.find(generate_key()) is None  # an answer, not ServiceUnavailable
        new_key, new = await store.create("after", ["stream"], None)
        assert (await authenticate(store, new_key, clock())).id == new.id
    finally:
        await store.close()


async def test_redis_store_refuses_known_keys_once_their_records_are_older_than_stale_max(
    private_redis: Any, clock: FakeClock
) -> None:
    """During an outage a cached record is believed for KEYSTORE_STALE_MAX, not for ever:
    a revocation made meanwhile would otherwise never be seen."""
    store = make_redis_store(private_redis.url, "walletd:", clock=clock, stale_max_s=300)
    try:
        key, record = await store.create("seen", ["stream"], None)
        assert await store.find(key) == record
        private_redis.stop()
        clock.advance(299)
        assert (await authenticate(store, key, clock())).id == record.id
        assert not store.stale
        clock.advance(1)
        with pytest.raises(ServiceUnavailable) as unavailable:
            await authenticate(store, key, clock())
        assert unavailable.value.retry_after is not None and unavailable.value.retry_after > 0
        with pytest.raises(ServiceUnavailable):
            await store.get(record.id)
        assert store.stale

        private_redis.start()  # an empty Redis: it kept nothing on disk
        clock.advance(2.0)
        assert await store.find(key) is None  # an answer again, from Redis
        assert not store.stale
    finally:
        await store.close()


@pytest.mark.parametrize(
    "raw",
    [b"", b"not json", b"[]", b"null", b'{"id": 1}', b"\xff\xfe", b'"' + b"a" * 100_000 + b'"'],
)
async def test_redis_store_treats_junk_records_as_unknown_keys(
    redis_store: RedisKeyStore,
    redis_client: redis.Redis,
    redis_prefix: str,
    hasher: KeyHasher,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    raw: bytes,
) -> None:
    key, _ = await redis_store.create("victim", ["stream"], None)
    await redis_client.set(f"{redis_prefix}key:{hasher.digest(key)}", raw)
    await redis_store.refresh()
    with caplog.at_level(logging.ERROR, logger="walletd.keys"):
        with pytest.raises(InvalidApiKey, match="unknown"):
            await authenticate(redis_store, key, clock())
    assert [r.getMessage() for r in caplog.records] == ["keystore_record_rejected"]
    assert [r.id for r in await redis_store.list()] == []  # listed: skipped, not a crash


async def test_redis_store_get_refuses_an_id_pointed_at_another_record(
    redis_store: RedisKeyStore, redis_client: redis.Redis, redis_prefix: str
) -> None:
    """Open streams re-check their key by id: a rewired index must not vouch for it."""
    _, revoked = await redis_store.create("revoked", ["stream"], None)
    await redis_store.revoke(revoked.id)
    _, other = await redis_store.create("other", ["stream"], None)
    await redis_client.hset(f"{redis_prefix}keyids", revoked.id, other.digest)
    await redis_store.refresh()
    assert await redis_store.get(revoked.id) is None
    assert await redis_store.get(other.id) == other
