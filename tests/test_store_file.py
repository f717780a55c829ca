"""The file key store: signed records in one JSON file, atomic writes, reloads."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.clocks import FakeClock
from tests.keystores import SECRET, make_file_store, revoke_and_check
from walletd.auth.format import generate_key
from walletd.auth.keys import KeyHasher, authenticate
from walletd.errors import InvalidApiKey


async def test_file_store_holds_digests_never_keys(tmp_path: Path, hasher: KeyHasher) -> None:
    path = tmp_path / "keys.json"
    key, record = await make_file_store(path).create("a", ["stream"], None)
    text = path.read_text()
    assert key not in text and key[10:] not in text
    assert hasher.digest(key) in text
    doc = json.loads(text)
    assert doc["version"] == 1 and [k["id"] for k in doc["keys"]] == [record.id]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_file_store_missing_file_means_no_keys(tmp_path: Path, hasher: KeyHasher) -> None:
    store = make_file_store(tmp_path / "absent.json")
    assert await store.find(generate_key()) is None
    assert await store.list() == []
    assert not (tmp_path / "absent.json").exists()


async def test_file_store_sees_another_writer_after_the_check_interval(
    tmp_path: Path, hasher: KeyHasher, clock: FakeClock
) -> None:
    path = tmp_path / "keys.json"
    server = make_file_store(path, clock=clock, check_interval_s=1.0)
    cli = make_file_store(path, clock=clock)
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
    server = make_file_store(path, check_interval_s=0)
    key, _ = await server.create("x", ["stream"], None)
    assert await server.find(key) is not None
    path.unlink()
    assert await server.find(key) is None


async def test_file_store_refresh_reloads_at_once(
    tmp_path: Path, hasher: KeyHasher, clock: FakeClock
) -> None:
    path = tmp_path / "keys.json"
    server = make_file_store(path, clock=clock, check_interval_s=3600)
    await server.refresh()
    key, _ = await make_file_store(path).create("x", ["stream"], None)
    assert await server.find(key) is None
    await server.refresh()  # SIGHUP
    assert await server.find(key) is not None


async def test_file_store_keeps_the_last_good_snapshot_of_a_corrupt_file(
    tmp_path: Path, hasher: KeyHasher, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "keys.json"
    server = make_file_store(path, check_interval_s=0)
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
        await make_file_store(path).create("x", ["stream"], None)
    assert path.read_text() == '{"version": 1, "keys": [{"id": 1}]}'


async def test_file_store_concurrent_writers_lose_no_key(tmp_path: Path, hasher: KeyHasher) -> None:
    path = tmp_path / "keys.json"
    stores = [make_file_store(path) for _ in range(4)]  # each writes from its own thread
    created = await asyncio.gather(
        *(stores[i % 4].create(f"t{i}", ["stream"], None) for i in range(40))
    )
    listed = await make_file_store(path).list()
    assert {r.id for r in listed} == {r.id for _, r in created}
    assert len(listed) == 40


def test_file_store_concurrent_processes_lose_no_key(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    script = textwrap.dedent(
        """
        import asyncio, sys
        from walletd.auth.keys import KeyHasher, RecordSigner
        from walletd.auth.store_file import FileKeyStore

        async def main():
            secret = sys.argv[2]
            store = FileKeyStore(sys.argv[1], KeyHasher(secret), RecordSigner(secret))
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
    store = make_file_store(path)
    _, record = await store.create("a", ["stream"], None)
    os.chmod(path, 0o644)
    await store.revoke(record.id)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_concurrent_first_lookups_all_wait_for_the_first_read(tmp_path, hasher):
    """A server just started gets many requests before its first read of the file is
    done: none may see the empty snapshot that read is replacing."""
    writer = make_file_store(tmp_path / "keys.json")
    key, record = await writer.create("early", ["stream"], None)
    fresh = make_file_store(tmp_path / "keys.json")
    found = await asyncio.gather(*(fresh.find(key) for _ in range(50)))
    assert found == [record] * 50


async def test_file_store_refuses_an_edited_record_and_keeps_it_on_rewrite(
    tmp_path: Path, hasher: KeyHasher, caplog: pytest.LogCaptureFixture
) -> None:
    """The file is the service's own, but a hand edit must still not grant a scope; and
    the next write by the command must not silently drop the entry either."""
    path = tmp_path / "keys.json"
    server = make_file_store(path, check_interval_s=0)
    key, record = await server.create("edited", ["stream"], None)
    doc = json.loads(path.read_text())
    doc["keys"][0]["scopes"] = ["stream", "admin"]
    path.write_text(json.dumps(doc))
    with caplog.at_level(logging.ERROR, logger="walletd.keys"):
        with pytest.raises(InvalidApiKey, match="unknown"):
            await authenticate(server, key, 0.0)
        assert await server.get(record.id) is None
    errors = [r for r in caplog.records if r.getMessage() == "keystore_record_rejected"]
    assert len(errors) == 1 and record.id in errors[0].__dict__["error"]  # once per change
    assert hasher.digest(key) not in caplog.text

    other_key, _ = await make_file_store(path).create("other", ["stream"], None)
    kept = json.loads(path.read_text())["keys"]
    assert doc["keys"][0] in kept and len(kept) == 2
    assert await server.find(other_key) is not None
