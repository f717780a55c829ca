"""API keys (SPEC §3): generation, HMAC digests, and the file and Redis key stores.

A key is shown once, when it is made; the stores keep only its HMAC-SHA256 under
SECRET_KEY, so a leaked key file or Redis dump lets no one in. Both stores pick up
changes made by another process (the `walletd keys` command) without a restart.
"""

from __future__ import annotations

import abc
import asyncio
import builtins
import contextlib
import dataclasses
import fcntl
import hashlib
import hmac
import json
import logging
import math
import os
import re
import secrets
import string
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import redis.asyncio as redis
from redis.exceptions import WatchError

from walletd.config import Settings
from walletd.errors import InvalidApiKey, ServiceUnavailable
from walletd.ops.redis import REDIS_ERRORS, connect

log = logging.getLogger("walletd.keys")

T = TypeVar("T")
Clock = Callable[[], float]

SCOPES = ("stream", "metrics", "admin")
DEFAULT_SCOPES = ("stream",)
KEY_PREFIX = "wd_"
KEY_BODY_LENGTH = 32
PREFIX_LENGTH = 10  # what logs and `keys list` may show of a key
_ALPHABET = string.ascii_letters + string.digits
_KEY_RE = re.compile(r"wd_[A-Za-z0-9]{32}")
_DIGEST_RE = re.compile(r"[0-9a-f]{64}")
_MAX_NAME_LENGTH = 100
# How long a client should wait when the key store cannot answer.
RETRY_AFTER_S = 5


def generate_key() -> str:
    """A new key: `wd_` and 32 characters [A-Za-z0-9] from the OS CSPRNG (190 bits)."""
    return KEY_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(KEY_BODY_LENGTH))


def is_well_formed(key: str) -> bool:
    """True when `key` has the shape of a walletd key (says nothing of its validity)."""
    return _KEY_RE.fullmatch(key) is not None


def mask_key(key: str) -> str:
    """At most the first 10 characters and `...`, printable only: safe for any log line."""
    return "".join(c if c.isprintable() else "?" for c in key[:PREFIX_LENGTH]) + "..."


def parse_scopes(scopes: Iterable[str] | str) -> frozenset[str]:
    """Scopes from names or one comma-separated string.

    Raises ValueError naming the unknown scope, or when none is given.
    """
    items = scopes.split(",") if isinstance(scopes, str) else scopes
    names = [s.strip().lower() for s in items if s.strip()]
    unknown = [s for s in names if s not in SCOPES]
    if unknown:
        raise ValueError(f"unknown scope {unknown[0]!r}: expected one of {', '.join(SCOPES)}")
    if not names:
        raise ValueError(f"no scope given: expected one or more of {', '.join(SCOPES)}")
    return frozenset(names)


def check_name(name: str) -> str:
    """The name, stripped. Raises ValueError unless 1..100 printable characters."""
    name = name.strip()
    if not name or len(name) > _MAX_NAME_LENGTH or not name.isprintable():
        raise ValueError(f"key name must be 1..{_MAX_NAME_LENGTH} printable characters")
    return name


def ordered_scopes(scopes: Iterable[str]) -> list[str]:
    """Scopes in the order of SCOPES, for stable output."""
    return [s for s in SCOPES if s in scopes]


class KeyHasher:
    """HMAC-SHA256 of keys under SECRET_KEY: a stolen store cannot be brute-forced offline."""

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("SECRET_KEY is empty: API keys are stored as HMACs under it")
        # The keyed state once; each digest copies it (half the cost of keying anew).
        self._keyed = hmac.new(secret.encode("utf-8"), digestmod=hashlib.sha256)

    def digest(self, key: str) -> str:
        mac = self._keyed.copy()
        # surrogatepass: any str a request can carry hashes, rather than raising.
        mac.update(key.encode("utf-8", "surrogatepass"))
        return mac.hexdigest()


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What is stored about a key: never the key itself."""

    id: str
    name: str
    scopes: frozenset[str]
    prefix: str  # the key's first 10 characters, to recognise it in lists and logs
    digest: str
    created_at: float
    expires_at: float | None
    revoked: bool

    def usable(self, now: float) -> bool:
        """Not revoked and not expired at `now`."""
        return not self.revoked and (self.expires_at is None or now < self.expires_at)


class KeyNotFound(Exception):
    """No key has this id."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"no API key with id {key_id!r}")
        self.key_id = key_id


class KeyStore(abc.ABC):
    """Where key records live. Lookups are hot (every request); writes are rare (CLI)."""

    @abc.abstractmethod
    async def find(self, key: str) -> KeyRecord | None:
        """The record of `key` (by digest), usable or not; None when unknown."""

    @abc.abstractmethod
    async def get(self, key_id: str) -> KeyRecord | None:
        """The record with this id, or None (open streams re-check their key with it)."""

    @abc.abstractmethod
    async def create(
        self, name: str, scopes: Iterable[str], expires_at: float | None
    ) -> tuple[str, KeyRecord]:
        """A new key and its record. Raises ValueError for a bad name, scope or expiry."""

    @abc.abstractmethod
    async def list(self) -> builtins.list[KeyRecord]:
        """Every record, oldest first."""

    @abc.abstractmethod
    async def revoke(self, key_id: str) -> KeyRecord:
        """Mark the key revoked (idempotent). Raises KeyNotFound."""

    @abc.abstractmethod
    async def rotate(self, key_id: str, overlap_s: float) -> tuple[str, KeyRecord]:
        """A new key with the old one's name, scopes and lifetime; the old one stays
        valid for at most `overlap_s` more. Raises KeyNotFound, or ValueError when the
        old key is revoked (a revoked key was likely leaked: create one deliberately)."""

    @abc.abstractmethod
    async def refresh(self) -> None:
        """Re-read the backing store now (SIGHUP)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections."""


async def authenticate(store: KeyStore, key: str, now: float) -> KeyRecord:
    """The usable record of `key`.

    Raises InvalidApiKey when the key is malformed (checked first, so junk never costs a
    lookup), unknown, revoked or expired; ServiceUnavailable when the store cannot tell.
    """
    if not is_well_formed(key):
        raise InvalidApiKey(f"malformed API key {mask_key(key)}")
    record = await store.find(key)
    if record is None:
        raise InvalidApiKey(f"unknown API key {mask_key(key)}")
    if record.revoked:
        raise InvalidApiKey(f"revoked API key {record.id}")
    if not record.usable(now):
        raise InvalidApiKey(f"expired API key {record.id}")
    return record


def open_keystore(settings: Settings, *, clock: Clock = time.time) -> KeyStore:
    """The store the settings select. Raises ValueError without SECRET_KEY (or REDIS_URL)."""
    if not settings.secret_key:
        raise ValueError("SECRET_KEY is not set: API keys are stored as HMACs under it")
    hasher = KeyHasher(settings.secret_key)
    if settings.keystore == "redis":
        if not settings.redis_url:
            raise ValueError("KEYSTORE=redis needs REDIS_URL")
        return RedisKeyStore(
            connect(settings.redis_url), settings.redis_prefix, hasher, clock=clock
        )
    return FileKeyStore(Path(settings.api_keys_file), hasher, clock=clock)


# Records and their validation, shared by both stores.


def _new_record(
    hasher: KeyHasher,
    name: str,
    scopes: Iterable[str],
    created_at: float,
    expires_at: float | None,
) -> tuple[str, KeyRecord]:
    name = check_name(name)
    if expires_at is not None and not (math.isfinite(expires_at) and expires_at > created_at):
        raise ValueError("expiry must be in the future")
    key = generate_key()
    record = KeyRecord(
        id="k_" + secrets.token_hex(6),
        name=name,
        scopes=parse_scopes(scopes),
        prefix=key[:PREFIX_LENGTH],
        digest=hasher.digest(key),
        created_at=created_at,
        expires_at=expires_at,
        revoked=False,
    )
    return key, record


def _successor(
    old: KeyRecord, hasher: KeyHasher, now: float, overlap_s: float
) -> tuple[str, KeyRecord, KeyRecord]:
    """(new key, its record, the old record cut to the overlap) for a rotation."""
    if old.revoked:
        raise ValueError(f"key {old.id} is revoked: create a new key instead of rotating it")
    if not (math.isfinite(overlap_s) and overlap_s >= 0):
        raise ValueError("overlap must be zero or more seconds")
    lifetime = None if old.expires_at is None else old.expires_at - old.created_at
    expires_at = None if lifetime is None else now + max(lifetime, 1.0)
    key, new = _new_record(hasher, old.name, old.scopes, now, expires_at)
    cutoff = now + overlap_s
    old_expiry = cutoff if old.expires_at is None else min(old.expires_at, cutoff)
    return key, new, dataclasses.replace(old, expires_at=old_expiry)


def record_to_dict(record: KeyRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "scopes": ordered_scopes(record.scopes),
        "prefix": record.prefix,
        "digest": record.digest,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "revoked": record.revoked,
    }


def record_from_dict(item: object) -> KeyRecord:
    """Raises ValueError for anything but a well-typed record."""
    if not isinstance(item, Mapping):
        raise ValueError("a key record must be an object")

    def field(name: str, kind: type | tuple[type, ...], *, optional: bool = False) -> Any:
        value = item.get(name)
        if value is None and optional:
            return None
        # bool is an int: `true` is not a time.
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise ValueError(f"key record field {name!r} is missing or mistyped")
        return value

    digest = field("digest", str)
    if not _DIGEST_RE.fullmatch(digest):
        raise ValueError("key record field 'digest' is not a hex SHA-256")
    scopes = field("scopes", list)
    if not all(isinstance(s, str) for s in scopes):
        raise ValueError("key record field 'scopes' must list names")
    return KeyRecord(
        id=field("id", str),
        name=field("name", str),
        scopes=parse_scopes(scopes),
        prefix=field("prefix", str),
        digest=digest,
        created_at=float(field("created_at", (int, float))),
        expires_at=_float_or_none(field("expires_at", (int, float), optional=True)),
        revoked=field("revoked", bool),
    )


def _float_or_none(value: float | None) -> float | None:
    return None if value is None else float(value)


def _text(value: bytes | str) -> str:
    """Redis answers bytes (decode_responses=False); ids and digests are ASCII."""
    return value.decode() if isinstance(value, bytes) else value


def _fresh(stamp: float, now: float, ttl: float) -> bool:
    """Within `ttl` after `stamp`; a clock that went backwards counts as stale."""
    return 0 <= now - stamp < ttl


# The file store.

Stamp = tuple[int, int, int] | None  # (st_mtime_ns, st_size, st_ino); None: no file
_NOTHING = object()  # no failure reported (None is the stamp of a missing file)


class KeyFileError(ValueError):
    """The key file exists but cannot be read or parsed.

    `token` identifies the failure (the file's stamp), so it is reported once per change.
    """

    def __init__(self, token: object, message: str) -> None:
        super().__init__(message)
        self.token = token


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """One consistent reading of the file, swapped in whole."""

    by_digest: dict[str, KeyRecord]
    by_id: dict[str, KeyRecord]
    stamp: Stamp

    @classmethod
    def of(cls, records: Iterable[KeyRecord], stamp: Stamp) -> _Snapshot:
        by_id = {r.id: r for r in records}
        return cls({r.digest: r for r in by_id.values()}, by_id, stamp)


def _stamp(path: Path) -> Stamp:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _load(path: Path) -> _Snapshot:
    """Read the file. Missing means no keys; raises KeyFileError for anything unusable."""
    try:
        stamp = _stamp(path)
    except OSError as exc:
        raise KeyFileError(("stat", exc.errno), f"{path}: {exc.strerror}") from exc
    if stamp is None:
        return _Snapshot.of((), None)
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:  # replaced or removed since the stat: read again next time
        return _Snapshot.of((), None)
    except OSError as exc:
        raise KeyFileError(stamp, f"{path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise KeyFileError(stamp, f"{path}: not JSON ({exc})") from exc
    if (
        not isinstance(doc, dict)
        or doc.get("version") != 1
        or not isinstance(doc.get("keys"), list)
    ):
        raise KeyFileError(stamp, f'{path}: expected {{"version": 1, "keys": [...]}}')
    try:
        records = [record_from_dict(item) for item in doc["keys"]]
    except ValueError as exc:
        raise KeyFileError(stamp, f"{path}: {exc}") from exc
    return _Snapshot.of(records, stamp)


def _replace_atomically(path: Path, data: bytes) -> Stamp:
    """Write `data` to a temp file beside `path`, fsync it, rename it over `path`.

    Readers see the old file or the new one, never half of one. The new file is 0600
    and keeps the owner of the file it replaces (or of the directory): an operator
    running the command as root must not leave a file the service cannot read.
    """
    directory = path.parent
    owner = os.stat(path if path.exists() else directory)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:  # mkstemp: mode 0600
            with contextlib.suppress(PermissionError):  # only root may give files away
                os.fchown(f.fileno(), owner.st_uid, owner.st_gid)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            st = os.fstat(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a crash
    finally:
        os.close(dir_fd)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class FileKeyStore(KeyStore):
    """Records in a JSON file, `{"version": 1, "keys": [...]}`.

    Lookups are dict lookups on an in-memory snapshot; the file is re-stat'ed at most
    once per `check_interval_s` and re-read when it changed, so the command's writes
    reach a running server within that interval. A file that cannot be read leaves the
    last good snapshot in place: a bad edit must not lock every client out.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        hasher: KeyHasher,
        *,
        clock: Clock = time.time,
        check_interval_s: float = 1.0,
    ) -> None:
        self._path = Path(path)
        self._lock_path = self._path.with_name(self._path.name + ".lock")
        self._hasher = hasher
        self._clock = clock
        self._check_interval_s = check_interval_s
        self._snapshot = _Snapshot.of((), None)
        self._checked_at = -math.inf
        self._reported: object = _NOTHING  # token of the failure already logged
        self._reloading = asyncio.Lock()

    @property
    def path(self) -> Path:
        return self._path

    async def find(self, key: str) -> KeyRecord | None:
        await self._check()
        digest = self._hasher.digest(key)
        record = self._snapshot.by_digest.get(digest)
        # The dict compares HMAC outputs an attacker cannot steer; compare again in
        # constant time all the same, so no lookup path leaks timing.
        if record is None or not hmac.compare_digest(record.digest, digest):
            return None
        return record

    async def get(self, key_id: str) -> KeyRecord | None:
        await self._check()
        return self._snapshot.by_id.get(key_id)

    async def list(self) -> builtins.list[KeyRecord]:
        snapshot = await asyncio.to_thread(_load, self._path)  # the file, not a stale copy
        self._snapshot = snapshot
        return sorted(snapshot.by_id.values(), key=lambda r: r.created_at)

    async def create(
        self, name: str, scopes: Iterable[str], expires_at: float | None
    ) -> tuple[str, KeyRecord]:
        key, record = _new_record(self._hasher, name, scopes, self._clock(), expires_at)

        def add(records: dict[str, KeyRecord]) -> None:
            records[record.id] = record

        await asyncio.to_thread(self._write, add)
        return key, record

    async def revoke(self, key_id: str) -> KeyRecord:
        def mark(records: dict[str, KeyRecord]) -> KeyRecord:
            old = records.get(key_id)
            if old is None:
                raise KeyNotFound(key_id)
            records[key_id] = dataclasses.replace(old, revoked=True)
            return records[key_id]

        return await asyncio.to_thread(self._write, mark)

    async def rotate(self, key_id: str, overlap_s: float) -> tuple[str, KeyRecord]:
        now = self._clock()

        def swap(records: dict[str, KeyRecord]) -> tuple[str, KeyRecord]:
            old = records.get(key_id)
            if old is None:
                raise KeyNotFound(key_id)
            key, new, records[key_id] = _successor(old, self._hasher, now, overlap_s)
            records[new.id] = new
            return key, new

        return await asyncio.to_thread(self._write, swap)

    async def refresh(self) -> None:
        self._checked_at = self._clock()
        async with self._reloading:
            try:
                self._snapshot = await asyncio.to_thread(_load, self._path)
            except KeyFileError as exc:
                if exc.token != self._reported:
                    log.error(
                        "keystore_unreadable", extra={"path": str(self._path), "error": str(exc)}
                    )
                    self._reported = exc.token
            else:
                self._reported = _NOTHING

    async def close(self) -> None:
        pass

    async def _check(self) -> None:
        """Reload when the file changed; the stat is microseconds, so it stays inline."""
        now = self._clock()
        if _fresh(self._checked_at, now, self._check_interval_s):
            if self._reloading.locked():
                # Another caller's reload is under way: wait for its answer rather than
                # use the snapshot it replaces (at start, an empty one: valid keys refused).
                async with self._reloading:
                    pass
            return
        self._checked_at = now
        try:
            stamp: object = _stamp(self._path)
        except OSError as exc:
            stamp = ("stat", exc.errno)
        if stamp != self._snapshot.stamp and stamp != self._reported:
            await self.refresh()

    def _write(self, change: Callable[[dict[str, KeyRecord]], T]) -> T:
        """Read-modify-write under an exclusive lock, so concurrent writers lose nothing.

        Raises KeyFileError when the current file is unusable: overwriting it would
        drop every key in it.
        """
        lock_fd = os.open(self._lock_path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            records = dict(_load(self._path).by_id)
            result = change(records)
            doc = {"version": 1, "keys": [record_to_dict(r) for r in records.values()]}
            data = json.dumps(doc, indent=2).encode() + b"\n"
            stamp = _replace_atomically(self._path, data)
        finally:
            os.close(lock_fd)  # releases the lock
        self._snapshot = _Snapshot.of(records.values(), stamp)
        return result


# The Redis store.


class RedisKeyStore(KeyStore):
    """Records as JSON under `{prefix}key:{digest}`, with an id index `{prefix}keyids`.

    `find` caches answers (unknown ones too) for `cache_s`: a hot key costs no round
    trip, and a revocation takes effect within `cache_s`. While Redis is unreachable a
    key seen before keeps working from its last-known record; an unseen one raises
    ServiceUnavailable, since we cannot tell that it is invalid. After a failure,
    lookups wait `cache_s` before trying Redis again, so an outage costs no timeouts.
    `close` closes the client.
    """

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        hasher: KeyHasher,
        *,
        clock: Clock = time.time,
        cache_s: float = 2.0,
        max_unknown: int = 10_000,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._ids_key = f"{prefix}keyids"
        self._hasher = hasher
        self._clock = clock
        self._cache_s = cache_s
        self._max_unknown = max_unknown
        self._known: dict[str, tuple[KeyRecord, float]] = {}  # digest -> record, fetched at
        self._ids: dict[str, str] = {}  # id -> digest, of known records
        self._unknown: dict[str, float] = {}  # digest -> fetched at; bounded (junk keys)
        self._failed_at = -math.inf
        self._outage = False

    def _record_key(self, digest: str) -> str:
        return f"{self._prefix}key:{digest}"

    async def find(self, key: str) -> KeyRecord | None:
        digest = self._hasher.digest(key)
        now = self._clock()
        known = self._known.get(digest)
        if known is not None and _fresh(known[1], now, self._cache_s):
            return known[0]
        if known is None and _fresh(self._unknown.get(digest, -math.inf), now, self._cache_s):
            return None
        return await self._lookup(digest, None, now)

    async def get(self, key_id: str) -> KeyRecord | None:
        now = self._clock()
        known = self._known.get(self._ids.get(key_id, ""))
        if known is not None and _fresh(known[1], now, self._cache_s):
            return known[0]
        return await self._lookup(None, key_id, now)

    async def _lookup(self, digest: str | None, key_id: str | None, now: float) -> KeyRecord | None:
        """Ask Redis (by digest, else by id); fall back to the last-known record."""
        if digest is None:
            digest = self._ids.get(key_id or "")
        if _fresh(self._failed_at, now, self._cache_s):
            return self._last_known(digest)  # it failed moments ago: don't wait on it again
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
            return self._last_known(digest)
        if self._outage:
            self._outage = False
            log.info("keystore_reachable")
        if digest is None:  # no such id
            return None
        if raw is None:
            self._forget(digest, now)
            return None
        try:
            record = record_from_dict(json.loads(raw))
        except ValueError as exc:
            log.error("keystore_unreadable", extra={"key_digest": digest[:12], "error": str(exc)})
            return self._known.get(digest, (None, 0.0))[0]
        if not hmac.compare_digest(record.digest, digest):
            log.error(
                "keystore_unreadable", extra={"key_digest": digest[:12], "error": "digest mismatch"}
            )
            return None
        self._remember(record, now)
        return record

    def _last_known(self, digest: str | None) -> KeyRecord:
        known = self._known.get(digest or "")
        if known is None:
            raise ServiceUnavailable("key store unreachable", retry_after=RETRY_AFTER_S)
        return known[0]

    def _remember(self, record: KeyRecord, now: float) -> None:
        self._known[record.digest] = (record, now)
        self._ids[record.id] = record.digest
        self._unknown.pop(record.digest, None)

    def _forget(self, digest: str, now: float) -> None:
        known = self._known.pop(digest, None)
        if known is not None:
            self._ids.pop(known[0].id, None)
        self._unknown.pop(digest, None)
        if len(self._unknown) >= self._max_unknown:
            del self._unknown[next(iter(self._unknown))]  # the oldest
        self._unknown[digest] = now

    async def list(self) -> builtins.list[KeyRecord]:
        index = await self._client.hgetall(self._ids_key)
        if not index:
            return []
        raws = await self._client.mget([self._record_key(_text(d)) for d in index.values()])
        records = [record_from_dict(json.loads(raw)) for raw in raws if raw is not None]
        return sorted(records, key=lambda r: r.created_at)

    async def create(
        self, name: str, scopes: Iterable[str], expires_at: float | None
    ) -> tuple[str, KeyRecord]:
        now = self._clock()
        key, record = _new_record(self._hasher, name, scopes, now, expires_at)
        async with self._client.pipeline(transaction=True) as pipe:
            self._queue_write(pipe, record)
            await pipe.execute()
        self._remember(record, now)
        return key, record

    async def revoke(self, key_id: str) -> KeyRecord:
        (record,) = await self._update(key_id, lambda old: [dataclasses.replace(old, revoked=True)])
        return record

    async def rotate(self, key_id: str, overlap_s: float) -> tuple[str, KeyRecord]:
        now = self._clock()
        issued: builtins.list[str] = []

        def swap(old: KeyRecord) -> builtins.list[KeyRecord]:
            key, new, cut = _successor(old, self._hasher, now, overlap_s)
            issued[:] = [key]  # the last attempt's key (a WATCH conflict retries)
            return [cut, new]

        _, new = await self._update(key_id, swap)
        return issued[0], new

    async def refresh(self) -> None:
        """Drop cached answers; last-known records stay for an outage."""
        self._unknown.clear()
        self._known = {d: (r, -math.inf) for d, (r, _) in self._known.items()}

    async def close(self) -> None:
        await self._client.aclose()

    def _queue_write(self, pipe: Any, record: KeyRecord) -> None:
        pipe.set(self._record_key(record.digest), json.dumps(record_to_dict(record)))
        pipe.hset(self._ids_key, record.id, record.digest)

    async def _update(
        self, key_id: str, change: Callable[[KeyRecord], builtins.list[KeyRecord]]
    ) -> builtins.list[KeyRecord]:
        """Read the record of `key_id`, write `change(record)` atomically (WATCH/MULTI)."""
        async with self._client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(self._ids_key)
                    raw_digest = await pipe.hget(self._ids_key, key_id)
                    if raw_digest is None:
                        raise KeyNotFound(key_id)
                    record_key = self._record_key(_text(raw_digest))
                    await pipe.watch(record_key)
                    raw = await pipe.get(record_key)
                    if raw is None:
                        raise KeyNotFound(key_id)
                    records = change(record_from_dict(json.loads(raw)))
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
