"""API keys: format, HMAC storage, authentication, and the file and Redis stores."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import string
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis
from clocks import FakeClock
from conftest import make_settings

from walletd.auth.keys import (
    SCOPES,
    FileKeyStore,
    KeyHasher,
    KeyNotFound,
    KeyRecord,
    KeyStore,
    RedisKeyStore,
    authenticate,
    generate_key,
    is_well_formed,
    mask_key,
    open_keystore,
    parse_scopes,
)
from walletd.errors import InvalidApiKey, ServiceUnavailable
from walletd.ops.redis import connect

SECRET = "s" * 32
DAY = 86_400.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def hasher() -> KeyHasher:
    return KeyHasher(SECRET)


@pytest.fixture(params=["file", "redis"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, hasher: KeyHasher, clock: FakeClock
) -> AsyncIterator[KeyStore]:
    """Each backend, with caches that never hide a write from the next read."""
    if request.param == "file":
        yield FileKeyStore(tmp_path / "keys.json", hasher, clock=clock, check_interval_s=0)
        return
    url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("redis_prefix")
    redis_store = RedisKeyStore(connect(url), prefix, hasher, clock=clock, cache_s=0)
    yield redis_store
    await redis_store.close()


# Key format, masking, hashing


def test_generated_keys_have_the_spec_format_and_full_alphabet() -> None:
    keys = {generate_key() for _ in range(1000)}
    assert len(keys) == 1000
    assert all(k.startswith("wd_") and len(k) == 35 and is_well_formed(k) for k in keys)
    # 32,000 random characters: every one of the 62 shows up, and nothing else does.
    assert set("".join(k[3:] for k in keys)) == set(string.ascii_letters + string.digits)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "wd_",
        "wd_" + "a" * 31,
        "wd_" + "a" * 33,
        "WD_" + "a" * 32,
        "xx_" + "a" * 32,
        "wd_" + "a" * 31 + "-",
        "wd_" + "a" * 31 + "é",
        "wd_" + "a" * 32 + "\n",
        " wd_" + "a" * 32,
    ],
)
def test_is_well_formed_rejects_anything_but_wd_and_32_alphanumerics(key: str) -> None:
    assert not is_well_formed(key)


def test_mask_key_shows_at_most_ten_printable_characters() -> None:
    key = generate_key()
    assert mask_key(key) == key[:10] + "..."
    assert mask_key("") == "..."
    assert mask_key("ab\ncd") == "ab?cd..."
    assert key[10:] not in mask_key(key)


def test_digest_is_an_hmac_that_depends_on_the_secret() -> None:
    key = generate_key()
    digest = KeyHasher(SECRET).digest(key)
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert digest == KeyHasher(SECRET).digest(key)
    assert digest != KeyHasher("another secret").digest(key)
    assert key not in digest


def test_hasher_refuses_an_empty_secret() -> None:
    with pytest.raises(ValueError, match="SECRET_KEY"):
        KeyHasher("")


def test_parse_scopes_accepts_lists_and_comma_strings() -> None:
    assert parse_scopes("stream, metrics") == {"stream", "metrics"}
    assert parse_scopes(["admin"]) == {"admin"}
    with pytest.raises(ValueError, match="unknown scope 'write'"):
        parse_scopes("stream,write")
    with pytest.raises(ValueError, match="no scope"):
        parse_scopes(",")


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


async def test_authenticate_rejects_a_malformed_key_without_a_lookup(clock: FakeClock) -> None:
    class Untouchable(FileKeyStore):
        async def find(self, key: str) -> Any:
            raise AssertionError("a malformed key reached the store")

    store = Untouchable("unused.json", KeyHasher(SECRET))
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


# The file store


async def test_file_store_holds_digests_never_keys(tmp_path: Path, hasher: KeyHasher) -> None:
    path = tmp_path / "keys.json"
    key, record = await FileKeyStore(path, hasher).create("a", ["stream"], None)
    text = path.read_text()
    assert key not in text and key[10:] not in text
    assert hasher.digest(key) in text
    doc = json.loads(text)
    assert doc["version"] == 1 and [k["id"] for k in doc["keys"]] == [record.id]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_file_store_missing_file_means_no_keys(tmp_path: Path, hasher: KeyHasher) -> None:
    store = FileKeyStore(tmp_path / "absent.json", hasher)
    assert await store.find(generate_key()) is None
    assert await store.list() == []
    assert not (tmp_path / "absent.json").exists()


async def revoke_and_check(
    writer: KeyStore,
    reader: KeyStore,
    key: str,
    record: KeyRecord,
    clock: FakeClock,
    after_s: float,
) -> None:
    """Revoke `key` through `writer`: `after_s` later, `reader` refuses it as revoked."""
    await writer.revoke(record.id)
    clock.advance(after_s)
    with pytest.raises(InvalidApiKey, match="revoked"):
        await authenticate(reader, key, clock())
    assert (await reader.get(record.id)).revoked  # type: ignore[union-attr]


async def test_file_store_sees_another_writer_after_the_check_interval(
    tmp_path: Path, hasher: KeyHasher, clock: FakeClock
) -> None:
    path = tmp_path / "keys.json"
    server = FileKeyStore(path, hasher, clock=clock, check_interval_s=1.0)
    cli = FileKeyStore(path, hasher, clock=clock)
    assert await server.find(generate_key()) is None  # first check: no file yet

    key, record = await cli.create("new", ["stream"], None)
    assert await server.find(key) is None  # checked less than a second ago
    clock.advance(1.0)
    assert await server.find(key) == record

    await revoke_and_check(cli, server, key, record, clock, after_s=1.0)


async def test_file_store_forgets_every_key_when_the_file_is_removed(
    tmp_path: Path, hasher: KeyHasher
) -> None:
    path = tmp_path / "keys.json"
    server = FileKeyStore(path, hasher, check_interval_s=0)
    key, _ = await server.create("x", ["stream"], None)
    assert await server.find(key) is not None
    path.unlink()
    assert await server.find(key) is None


async def test_file_store_refresh_reloads_at_once(
    tmp_path: Path, hasher: KeyHasher, clock: FakeClock
) -> None:
    path = tmp_path / "keys.json"
    server = FileKeyStore(path, hasher, clock=clock, check_interval_s=3600)
    await server.refresh()
    key, _ = await FileKeyStore(path, hasher).create("x", ["stream"], None)
    assert await server.find(key) is None
    await server.refresh()  # SIGHUP
    assert await server.find(key) is not None


async def test_file_store_keeps_the_last_good_snapshot_of_a_corrupt_file(
    tmp_path: Path, hasher: KeyHasher, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "keys.json"
    server = FileKeyStore(path, hasher, check_interval_s=0)
    key, _ = await server.create("keep", ["stream"], None)
    good = path.read_text()

    path.write_text(good[: len(good) // 2])  # a half-written file from a careless edit
    with caplog.at_level(logging.ERROR, logger="walletd.keys"):
        assert await server.find(key) is not None
        assert await server.find(key) is not None
    errors = [r for r in caplog.records if r.getMessage() == "keystore_unreadable"]
    assert len(errors) == 1  # once per change, not once per request

    path.write_text(json.dumps({"version": 1, "keys": []}))
    assert await server.find(key) is None  # a good file again is read


async def test_file_store_write_refuses_to_overwrite_a_corrupt_file(
    tmp_path: Path, hasher: KeyHasher
) -> None:
    path = tmp_path / "keys.json"
    path.write_text('{"version": 1, "keys": [{"id": 1}]}')
    with pytest.raises(ValueError, match=r"keys\.json"):
        await FileKeyStore(path, hasher).create("x", ["stream"], None)
    assert path.read_text() == '{"version": 1, "keys": [{"id": 1}]}'


async def test_file_store_concurrent_writers_lose_no_key(tmp_path: Path, hasher: KeyHasher) -> None:
    path = tmp_path / "keys.json"
    stores = [FileKeyStore(path, hasher) for _ in range(4)]  # each writes from its own thread
    created = await asyncio.gather(
        *(stores[i % 4].create(f"t{i}", ["stream"], None) for i in range(40))
    )
    listed = await FileKeyStore(path, hasher).list()
    assert {r.id for r in listed} == {r.id for _, r in created}
    assert len(listed) == 40


def test_file_store_concurrent_processes_lose_no_key(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    script = textwrap.dedent(
        """
        import asyncio, sys
        from walletd.auth.keys import FileKeyStore, KeyHasher

        async def main():
            store = FileKeyStore(sys.argv[1], KeyHasher(sys.argv[2]))
            for i in range(10):
                await store.create(f"p{sys.argv[3]}-{i}", ["stream"], None)

        asyncio.run(main())
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(path), SECRET, str(n)])
        for n in range(4)
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    names = {k["name"] for k in json.loads(path.read_text())["keys"]}
    assert names == {f"p{n}-{i}" for n in range(4) for i in range(10)}
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


async def test_file_store_keeps_the_file_private_across_rewrites(
    tmp_path: Path, hasher: KeyHasher
) -> None:
    path = tmp_path / "keys.json"
    store = FileKeyStore(path, hasher)
    _, record = await store.create("a", ["stream"], None)
    os.chmod(path, 0o644)
    await store.revoke(record.id)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# The Redis store


@pytest.fixture
async def open_redis_store(
    redis_url: str, redis_prefix: str, hasher: KeyHasher, clock: FakeClock
) -> AsyncIterator[Callable[[], RedisKeyStore]]:
    """Open a RedisKeyStore on the test's Redis and prefix, as another process would (its
    answers cached for 2 s, on the test's clock); each is closed after the test."""
    opened: list[RedisKeyStore] = []

    def open_store() -> RedisKeyStore:
        store = RedisKeyStore(connect(redis_url), redis_prefix, hasher, clock=clock, cache_s=2.0)
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
    store = RedisKeyStore(connect(private_redis.url), "walletd:", hasher, clock=clock, cache_s=2.0)
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


# open_keystore


async def test_open_keystore_picks_the_configured_backend(tmp_path: Path, redis_url: str) -> None:
    file_store = open_keystore(make_settings(SECRET_KEY=SECRET, API_KEYS_FILE=tmp_path / "k.json"))
    assert isinstance(file_store, FileKeyStore) and file_store.path == tmp_path / "k.json"
    redis_store = open_keystore(
        make_settings(SECRET_KEY=SECRET, KEYSTORE="redis", REDIS_URL=redis_url)
    )
    try:
        assert isinstance(redis_store, RedisKeyStore)
    finally:
        await redis_store.close()


def test_open_keystore_needs_a_secret_key() -> None:
    with pytest.raises(ValueError, match="SECRET_KEY"):
        open_keystore(make_settings())


async def test_concurrent_first_lookups_all_wait_for_the_first_read(tmp_path, hasher):
    """A server just started gets many requests before its first read of the file is
    done: none may see the empty snapshot that read is replacing."""
    writer = FileKeyStore(tmp_path / "keys.json", hasher)
    key, record = await writer.create("early", ["stream"], None)
    fresh = FileKeyStore(tmp_path / "keys.json", hasher)
    found = await asyncio.gather(*(fresh.find(key) for _ in range(50)))
    assert found == [record] * 50
