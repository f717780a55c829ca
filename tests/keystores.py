"""The real key stores under one test SECRET_KEY, and checks every store must pass."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.clocks import FakeClock
from walletd.auth.keys import KeyHasher, KeyRecord, KeyStore, RecordSigner, authenticate
from walletd.auth.store_file import FileKeyStore
from walletd.auth.store_redis import RedisKeyStore
from walletd.errors import InvalidApiKey
from walletd.ops.redis import connect

SECRET = "s" * 32
HASHER = KeyHasher(SECRET)
SIGNER = RecordSigner(SECRET)


def make_file_store(path: str | os.PathLike[str], **options: Any) -> FileKeyStore:
    return FileKeyStore(path, HASHER, SIGNER, **options)


def make_redis_store(url: str, prefix: str, **options: Any) -> RedisKeyStore:
    return RedisKeyStore(connect(url), prefix, HASHER, SIGNER, owns_client=True, **options)


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
