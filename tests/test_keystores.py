"""The KeyStore contract, on the file and the Redis store alike: authenticate, create,
list, revoke, rotate, resign."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.clocks import FakeClock
from tests.keystores import HASHER, SIGNER, make_file_store, make_redis_store
from walletd.auth.format import SCOPES, generate_key
from walletd.auth.keys import KeyHasher, KeyNotFound, KeyStore, authenticate
from walletd.auth.store_file import FileKeyStore
from walletd.errors import InvalidApiKey
from walletd.ops.redis import connect

DAY = 86_400.0


async def each_backend(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock, trust_s: float
) -> AsyncIterator[KeyStore]:
    """The store `request.param` names, trusting what it has read for `trust_s`."""
    if request.param == "file":
        yield make_file_store(tmp_path / "keys.json", clock=clock, check_interval_s=trust_s)
        return
    url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("redis_prefix")
    store = make_redis_store(url, prefix, clock=clock, cache_s=trust_s)
    yield store
    await store.close()


@pytest.fixture(params=["file", "redis"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, hasher: KeyHasher, clock: FakeClock
) -> AsyncIterator[KeyStore]:
    """Each backend, with caches that never hide a write from the next read."""
    async for store in each_backend(request, tmp_path, clock, trust_s=0):
        yield store


@pytest.fixture(params=["file", "redis"])
async def caching_store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[KeyStore]:
    """Each backend as the server runs it: what it has read is trusted for a second."""
    async for store in each_backend(request, tmp_path, clock, trust_s=1.0):
        yield store


# Behaviour shared by both stores


async def test_authenticate_returns_the_record_of_a_valid_key(
    store: KeyStore, clock: FakeClock
) -> None:
    key, record = await store.create("ci-bot", ["stream", "metrics"], None)
    found = await authenticate(store, key, clock())
    assert found == record
    assert found.scopes == frozenset({"stream", "metrics"})
    assert found.name == "ci-bot" and found.prefix == key[:10]
    assert found.id.startswith("k_") and len(found.id) == 14


async def test_cached_answers_a_known_key_only_while_find_would_not_look(
    caching_store: KeyStore, clock: FakeClock
) -> None:
    store = caching_store
    key, record = await store.create("ci-bot", ["stream"], None)
    assert await store.find(key) == record
    assert store.cached(key) == record  # read a moment ago: answered at once
    assert store.cached(generate_key()) is None  # unknown keys always ask `find`
    await store.revoke(record.id)
    clock.advance(1.0)
    assert store.cached(key) is None  # no longer fresh: `find` looks again
    with pytest.raises(InvalidApiKey, match="revoked"):
        await authenticate(store, key, clock())
    revoked = store.cached(key)
    assert revoked is not None and revoked.revoked


async def test_authenticate_rejects_a_malformed_key_without_a_lookup(clock: FakeClock) -> None:
    class Untouchable(FileKeyStore):
        async def find(self, key: str) -> Any:
            raise AssertionError("a malformed key reached the store")

    store = Untouchable("unused.json", HASHER, SIGNER)
    with pytest.raises(InvalidApiKey, match="malformed"):
        await authenticate(store, "wd_short", clock())


async def test_authenticate_rejects_an_unknown_key(store: KeyStore, clock: FakeClock) -> None:
    await store.create("someone", ["stream"], None)
    with pytest.raises(InvalidApiKey, match="unknown"):
        await authenticate(store, generate_key(), clock())


async def test_authenticate_rejects_a_revoked_key(store: KeyStore, clock: FakeClock) -> None:
    key, record = await store.create("leaked", ["stream"], None)
    revoked = await store.revoke(record.id)
    assert revoked.revoked
    with pytest.raises(InvalidApiKey, match="revoked"):
        await authenticate(store, key, clock())
    assert (await store.get(record.id)) == revoked


async def test_authenticate_rejects_a_key_once_it_expires(
    store: KeyStore, clock: FakeClock
) -> None:
    key, _ = await store.create("temp", ["stream"], clock() + 60)
    await authenticate(store, key, clock() + 59.9)
    with pytest.raises(InvalidApiKey, match="expired"):
        await authenticate(store, key, clock() + 60)


async def test_every_scope_round_trips(store: KeyStore) -> None:
    _, record = await store.create("all", list(SCOPES), None)
    assert (await store.get(record.id)) is not None
    assert (await store.get(record.id)).scopes == frozenset(SCOPES)  # type: ignore[union-attr]


async def test_create_refuses_bad_scopes_names_and_expiry(
    store: KeyStore, clock: FakeClock
) -> None:
    with pytest.raises(ValueError, match="unknown scope 'root'"):
        await store.create("x", ["root"], None)
    with pytest.raises(ValueError, match="name"):
        await store.create("  ", ["stream"], None)
    with pytest.raises(ValueError, match="future"):
        await store.create("x", ["stream"], clock() - 1)
    assert await store.list() == []


async def test_list_returns_every_record_oldest_first(store: KeyStore, clock: FakeClock) -> None:
    _, first = await store.create("first", ["stream"], None)
    clock.advance(1)
    _, second = await store.create("second", ["admin"], None)
    assert [r.id for r in await store.list()] == [first.id, second.id]


async def test_revoke_and_rotate_of_an_unknown_id_raise_key_not_found(store: KeyStore) -> None:
    with pytest.raises(KeyNotFound):
        await store.revoke("k_000000000000")
    with pytest.raises(KeyNotFound):
        await store.rotate("k_000000000000", 60)


async def test_rotate_keeps_both_keys_valid_for_the_overlap_only(
    store: KeyStore, clock: FakeClock
) -> None:
    old_key, old = await store.create("svc", ["stream", "admin"], None)
    clock.advance(100)
    new_key, new = await store.rotate(old.id, overlap_s=7 * DAY)
    assert new_key != old_key and new.id != old.id
    assert (new.name, new.scopes, new.expires_at) == ("svc", old.scopes, None)
    assert (await authenticate(store, old_key, clock())).id == old.id
    assert (await authenticate(store, new_key, clock())).id == new.id
    assert (await store.get(old.id)).expires_at == clock() + 7 * DAY  # type: ignore[union-attr]

    later = clock() + 7 * DAY
    with pytest.raises(InvalidApiKey, match="expired"):
        await authenticate(store, old_key, later)
    assert (await authenticate(store, new_key, later)).id == new.id


async def test_rotate_keeps_an_earlier_expiry_and_the_lifetime(
    store: KeyStore, clock: FakeClock
) -> None:
    _, old = await store.create("short", ["stream"], clock() + 30 * DAY)
    clock.advance(29 * DAY)
    _, new = await store.rotate(old.id, overlap_s=7 * DAY)
    assert (await store.get(old.id)).expires_at == old.expires_at  # type: ignore[union-attr]
    assert new.expires_at == clock() + 30 * DAY


async def test_rotate_refuses_a_revoked_key(store: KeyStore) -> None:
    _, record = await store.create("gone", ["stream"], None)
    await store.revoke(record.id)
    with pytest.raises(ValueError, match="revoked"):
        await store.rotate(record.id, 60)
    assert len(await store.list()) == 1


# Rotation and re-signing, on every store


async def test_rotate_refuses_an_expired_key(store: KeyStore, clock: FakeClock) -> None:
    _, record = await store.create("old", ["stream"], clock() + 60)
    clock.advance(60)
    with pytest.raises(ValueError, match="expired"):
        await store.rotate(record.id, 60)
    assert [r.id for r in await store.list()] == [record.id]


async def test_rotate_refuses_a_key_already_replaced(store: KeyStore, clock: FakeClock) -> None:
    _, record = await store.create("svc", ["stream"], clock() + 30 * DAY)
    _, new = await store.rotate(record.id, 7 * DAY)
    assert (await store.get(record.id)).replaced_by == new.id  # type: ignore[union-attr]
    clock.advance(DAY)
    with pytest.raises(ValueError, match=f"already rotated.*{new.id}"):
        await store.rotate(record.id, 7 * DAY)
    assert len(await store.list()) == 2


async def test_resign_signs_unsigned_records_and_leaves_forged_ones(
    store: KeyStore, clock: FakeClock, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """After an upgrade, unsigned records are refused until `walletd keys resign`."""
    old_key, old = await store.create("before signing", ["stream"], None)
    forged_key, forged = await store.create("forged", ["stream"], None)
    await rewrite(store, request, old.digest, lambda item: item.pop("sig"))
    await rewrite(store, request, forged.digest, lambda item: item.update(scopes=["admin"]))
    await store.refresh()
    for key in (old_key, forged_key):
        with pytest.raises(InvalidApiKey, match="unknown"):
            await authenticate(store, key, clock())

    report = await store.resign()
    assert [r.id for r in report.signed] == [old.id]
    assert len(report.refused) == 1 and forged.id in report.refused[0]
    assert (await authenticate(store, old_key, clock())).id == old.id
    with pytest.raises(InvalidApiKey, match="unknown"):
        await authenticate(store, forged_key, clock())
    assert (await store.resign()).signed == []  # once is enough

    revoked = await store.revoke(forged.id)  # a forged record can still be revoked
    assert revoked.revoked and revoked.scopes == {"admin"}
    assert (await store.get(forged.id)) == revoked  # signed now, and grants nothing
    assert {r.id for r in await store.list()} == {old.id, forged.id}


async def rewrite(
    store: KeyStore, request: pytest.FixtureRequest, digest: str, edit: Callable[[Any], Any]
) -> None:
    """Edit a stored record behind the store's back, in the file or in Redis."""
    if isinstance(store, FileKeyStore):
        doc = json.loads(store.path.read_text())
        for item in doc["keys"]:
            if item["digest"] == digest:
                edit(item)
        store.path.write_text(json.dumps(doc))
        return
    client = connect(request.getfixturevalue("redis_url"))
    name = f"{request.getfixturevalue('redis_prefix')}key:{digest}"
    try:
        stored = await client.get(name)
        assert stored is not None
        item = json.loads(stored)
        edit(item)
        await client.set(name, json.dumps(item))
    finally:
        await client.aclose()
