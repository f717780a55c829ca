"""The Redis key store: signed records shared by every instance, cached briefly in each."""

from __future__ import annotations

import builtins
import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as redis
from redis.exceptions import WatchError

from walletd.auth.keys import (
    Clock,
    KeyHasher,
    KeyNotFound,
    KeyRecord,
    KeyStore,
    RecordRejected,
    RecordSigner,
    ResignReport,
    dump_record,
    fresh,
    load_record,
    new_record,
    successor,
)
from walletd.errors import ServiceUnavailable
from walletd.ops.redis import REDIS_ERRORS

log = logging.getLogger("walletd.keys")

# How long a client should wait when the key store cannot answer.
RETRY_AFTER_S = 5
# How long a record read before an outage may still be believed (KEYSTORE_STALE_MAX).
STALE_MAX_S = 300.0


def _text(value: bytes | str) -> str:
    """Redis answers bytes (decode_responses=False); ids and digests are ASCII."""
    return value.decode() if isinstance(value, bytes) else value


def _parse(raw: bytes | str, signer: RecordSigner, digest: str | None = None) -> KeyRecord:
    """Raises RecordRejected for anything but a record signed for `digest`."""
    try:
        item = json.loads(raw)
    except ValueError:
        raise RecordRejected("key record is not JSON") from None
    return load_record(item, signer, digest=digest)


@dataclass(frozen=True, slots=True)
class _Known:
    record: KeyRecord
    fetched_at: float  # when Redis last vouched for it: bounds its use in an outage
    generation: int  # the cache generation it was read in (refresh() starts a new one)


class RedisKeyStore(KeyStore):
    """Signed records as JSON under `{prefix}key:{digest}`, with an id index `{prefix}keyids`.

    `find` caches answers (unknown ones too) for `cache_s`: a hot key costs no round
    trip, and a revocation takes effect within `cache_s`. While Redis is unreachable a
    key seen in the last `stale_max_s` keeps working from its last-known record; an
    unseen key, or one last read longer ago, raises ServiceUnavailable: we cannot tell
    that it is valid, and a revocation made meanwhile must not be missed for ever. After
    a failure, lookups wait `cache_s` before trying Redis again, so an outage costs no
    timeouts. A record that fails its check is an unknown key, logged as an error.
    """

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        hasher: KeyHasher,
        signer: RecordSigner,
        *,
        clock: Clock = time.time,
        cache_s: float = 2.0,
        stale_max_s: float = STALE_MAX_S,
        max_unknown: int = 10_000,
        owns_client: bool = False,
    ) -> None:
        self._client = client
        self._owns_client = owns_client  # opened for a tool (`walletd keys`), not the app's
        self._prefix = prefix
        self._ids_key = f"{prefix}keyids"
        self._hasher = hasher
        self._signer = signer
        self._clock = clock
        self._cache_s = cache_s
        self._stale_max_s = stale_max_s
        self._max_unknown = max_unknown
        self._known: dict[str, _Known] = {}  # digest -> last good record
        self._ids: dict[str, str] = {}  # id -> digest, of known records
        self._unknown: dict[str, float] = {}  # digest -> fetched at; bounded (junk keys)
        self._generation = 0
        self._failed_at = -math.inf
        self._reached_at = clock()  # last answer from Redis (start: nothing to be stale)
        self._outage = False

    def _record_key(self, digest: str) -> str:
        return f"{self._prefix}key:{digest}"

    @property
    def stale(self) -> bool:
        return self._outage and not fresh(self._reached_at, self._clock(), self._stale_max_s)

    def _cached(self, digest: str | None, now: float) -> KeyRecord | None:
        known = self._known.get(digest or "")
        if known is None or known.generation != self._generation:
            return None
        return known.record if fresh(known.fetched_at, now, self._cache_s) else None

    def cached(self, key: str) -> KeyRecord | None:
        return self._cached(self._hasher.digest(key), self._clock())

    async def find(self, key: str) -> KeyRecord | None:
        digest = self._hasher.digest(key)
        now = self._clock()
        if (record := self._cached(digest, now)) is not None:
            return record
        if digest not in self._known and fresh(
            self._unknown.get(digest, -math.inf), now, self._cache_s
        ):
            return None
        return await self._lookup(digest, None, now)

    async def get(self, key_id: str) -> KeyRecord | None:
        now = self._clock()
        if (record := self._cached(self._ids.get(key_id), now)) is not None:
            return record
        return await self._lookup(None, key_id, now)

    async def _lookup(self, digest: str | None, key_id: str | None, now: float) -> KeyRecord | None:
        """Ask Redis (by digest, else by id); fall back to the last-known record."""
        if digest is None:
            digest = self._ids.get(key_id or "")
        if fresh(self._failed_at, now, self._cache_s):
            return self._last_known(digest, now)  # it failed moments ago: don't wait again
        try:
            if key_id is not None:
                raw_digest = await self._client.hget(self._ids_key, key_id)
                digest = None if raw_digest is None else _text(raw_digest)
            raw = None if digest is None else await self._client.get(self._record_key(digest))
        except REDIS_ERRORS as exc:
            self._failed_at = now
            if not self._outage:
                self._outage = True
                log.warning("keystore_unreachable", extra={"error": str(exc) or repr(exc)})
            return self._last_known(digest, now)
        self._reached_at = now
        if self._outage:
            self._outage = False
            log.info("keystore_reachable")
        if digest is None:  # no such id
            return None
        try:
            if raw is None:
                raise KeyNotFound(key_id or "")
            record = _parse(raw, self._signer, digest)
            if key_id is not None and record.id != key_id:
                raise RecordRejected(f"the id index points {key_id} at {record.id}'s record")
        except RecordRejected as exc:
            log.error(
                "keystore_record_rejected", extra={"key_digest": digest[:12], "error": str(exc)}
            )
            self._forget(digest, now)
            return None
        except KeyNotFound:
            self._forget(digest, now)
            return None
        self._remember(record, now)
        return record

    def _last_known(self, digest: str | None, now: float) -> KeyRecord:
        known = self._known.get(digest or "")
        if known is None:
            raise ServiceUnavailable("key store unreachable", retry_after=RETRY_AFTER_S)
        if not fresh(known.fetched_at, now, self._stale_max_s):
            raise ServiceUnavailable(
                f"key store unreachable and the record of {known.record.id} is stale",
                retry_after=RETRY_AFTER_S,
            )
        return known.record

    def _remember(self, record: KeyRecord, now: float) -> None:
        self._known[record.digest] = _Known(record, now, self._generation)
        self._ids[record.id] = record.digest
        self._unknown.pop(record.digest, None)

    def _forget(self, digest: str, now: float) -> None:
        known = self._known.pop(digest, None)
        if known is not None:
            self._ids.pop(known.record.id, None)
        self._unknown.pop(digest, None)
        if len(self._unknown) >= self._max_unknown:
            del self._unknown[next(iter(self._unknown))]  # the oldest
        self._unknown[digest] = now

    async def list(self) -> builtins.list[KeyRecord]:
        index = await self._client.hgetall(self._ids_key)
        if not index:
            return []
        digests = [_text(d) for d in index.values()]
        raws = await self._client.mget([self._record_key(d) for d in digests])
        records = []
        for digest, raw in zip(digests, raws, strict=True):
            if raw is None:
                continue
            try:
                records.append(_parse(raw, self._signer, digest))
            except RecordRejected as exc:
                log.error(
                    "keystore_record_rejected",
                    extra={"key_digest": digest[:12], "error": str(exc)},
                )
        return sorted(records, key=lambda r: r.created_at)

    async def create(
        self, name: str, scopes: Iterable[str], expires_at: float | None
    ) -> tuple[str, KeyRecord]:
        now = self._clock()
        key, record = new_record(self._hasher, name, scopes, now, expires_at)
        async with self._client.pipeline(transaction=True) as pipe:
            self._queue_write(pipe, record)
            await pipe.execute()
        self._remember(record, now)
        return key, record

    async def revoke(self, key_id: str) -> KeyRecord:
        def mark(old: KeyRecord | RecordRejected) -> builtins.list[KeyRecord]:
            if isinstance(old, RecordRejected):
                if old.record is None:
                    raise ValueError(f"cannot revoke {key_id}: {old}")
                old = old.record  # unsigned or forged: revoked, it grants nothing
            return [dataclasses.replace(old, revoked=True)]

        (record,) = await self._update(key_id, mark)
        return record

    async def rotate(self, key_id: str, overlap_s: float) -> tuple[str, KeyRecord]:
        now = self._clock()
        issued: builtins.list[str] = []

        def swap(old: KeyRecord | RecordRejected) -> builtins.list[KeyRecord]:
            if isinstance(old, RecordRejected):
                raise ValueError(str(old))
            key, new, cut = successor(old, self._hasher, now, overlap_s)
            issued[:] = [key]  # the last attempt's key (a WATCH conflict retries)
            return [cut, new]

        _, new = await self._update(key_id, swap)
        return issued[0], new

    async def resign(self) -> ResignReport:
        report = ResignReport([], [])
        refusal: builtins.list[str] = []

        def sign(old: KeyRecord | RecordRejected) -> builtins.list[KeyRecord]:
            refusal.clear()  # a WATCH conflict calls this again
            if isinstance(old, KeyRecord):
                return []
            if old.unsigned and old.record is not None:
                return [old.record]
            refusal.append(str(old))
            return []

        for raw_id in await self._client.hkeys(self._ids_key):
            try:
                report.signed.extend(await self._update(_text(raw_id), sign))
            except KeyNotFound:
                continue  # indexed, but its record is gone: nothing to sign
            report.refused.extend(refusal)
        return report

    async def refresh(self) -> None:
        """Drop cached answers; last-known records stay for an outage."""
        self._unknown.clear()
        self._generation += 1

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    def _queue_write(self, pipe: Any, record: KeyRecord) -> None:
        pipe.set(self._record_key(record.digest), json.dumps(dump_record(record, self._signer)))
        pipe.hset(self._ids_key, record.id, record.digest)

    async def _update(
        self,
        key_id: str,
        change: Callable[[KeyRecord | RecordRejected], builtins.list[KeyRecord]],
    ) -> builtins.list[KeyRecord]:
        """Read the record of `key_id` and write `change(record)` atomically (WATCH/MULTI).

        `change` gets the RecordRejected instead when the record fails its check.
        """
        async with self._client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(self._ids_key)
                    raw_digest = await pipe.hget(self._ids_key, key_id)
                    if raw_digest is None:
                        raise KeyNotFound(key_id)
                    digest = _text(raw_digest)
                    await pipe.watch(self._record_key(digest))
                    raw = await pipe.get(self._record_key(digest))
                    if raw is None:
                        raise KeyNotFound(key_id)
                    current: KeyRecord | RecordRejected
                    try:
                        current = parsed = _parse(raw, self._signer, digest)
                        if parsed.id != key_id:
                            raise RecordRejected(f"the id index points {key_id} elsewhere")
                    except RecordRejected as exc:
                        current = exc
                        theirs = exc.record
                        if theirs is not None and (theirs.id, theirs.digest) != (key_id, digest):
                            current = RecordRejected(f"the record of {key_id} is another key's")
                    records = change(current)
                    if not records:
                        return records  # nothing to write (leaving unwatches)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    for record in records:
                        self._queue_write(pipe, record)
                    await pipe.execute()
                except WatchError:
                    continue  # another writer got there first: read again
                now = self._clock()
                for record in records:
                    self._remember(record, now)
                return records
