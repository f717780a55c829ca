"""API keys (SPEC §3): format, digests, signed records, the KeyStore seam, authentication.

Stores keep only a key's HMAC under SECRET_KEY (a leaked dump lets no one in), and sign
each record (so whoever can write to the store cannot grant a scope, lift an expiry or
un-revoke a key). No Redis, aiohttp or fcntl here: the client imports `mask_key`.
"""

from __future__ import annotations

import abc
import builtins
import dataclasses
import hashlib
import hmac
import json
import math
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from walletd.auth.format import (
    PREFIX_LENGTH,
    check_name,
    generate_key,
    is_well_formed,
    mask_key,
    ordered_scopes,
    parse_scopes,
)
from walletd.errors import InvalidApiKey

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from walletd.config import Settings

Clock = Callable[[], float]

_DIGEST_RE = re.compile(r"[0-9a-f]{64}")
_ID_RE = re.compile(r"k_[0-9a-f]{12}")
# The label the record-signing key is derived under; a new record format gets a new one.
RECORD_KEY_LABEL = b"walletd key records v1"
RESIGN_HINT = "run `walletd keys resign` once after upgrading (docs/DEPLOYMENT.md)"


class KeyHasher:
    """HMAC-SHA256 of keys under SECRET_KEY: a stolen store cannot be brute-forced offline.

    Recent digests are remembered: a client sends its key with every request. A digest
    depends on the key and the secret alone, so revocation and expiry are still checked
    on the record every time (bench/README.md, round two)."""

    MEMO_SIZE = 4096  # then forgotten all at once: bounded whatever keys clients make up

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("SECRET_KEY is empty: API keys are stored as HMACs under it")
        # The keyed state once; each digest copies it (half the cost of keying anew).
        self._keyed = hmac.new(secret.encode("utf-8"), digestmod=hashlib.sha256)
        self._memo: dict[str, str] = {}

    def digest(self, key: str) -> str:
        digest = self._memo.get(key)
        if digest is None:
            mac = self._keyed.copy()  # surrogatepass: any str a request carries hashes
            mac.update(key.encode("utf-8", "surrogatepass"))
            digest = mac.hexdigest()
            if len(self._memo) >= self.MEMO_SIZE:
                self._memo.clear()
            self._memo[key] = digest
        return digest


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
    replaced_by: str | None = None  # id of the key `keys rotate` issued in its place

    def usable(self, now: float) -> bool:
        """Not revoked and not expired at `now`."""
        return not self.revoked and (self.expires_at is None or now < self.expires_at)


class RecordSigner:
    """HMAC-SHA256 over every field of a record (its id and key digest included), keyed
    by HMAC(SECRET_KEY, RECORD_KEY_LABEL): not SECRET_KEY itself, which keys the digests."""

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("SECRET_KEY is empty: key records are signed with it")
        key = hmac.new(secret.encode("utf-8"), RECORD_KEY_LABEL, hashlib.sha256).digest()
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def sign(self, record: KeyRecord) -> str:
        # Canonical bytes from the typed record: any JSON spelling of the same values
        # (key order, 1 vs 1.0) verifies, and nothing outside the record is covered.
        fields = json.dumps(record_to_dict(record), sort_keys=True, separators=(",", ":"))
        mac = self._keyed.copy()
        mac.update(fields.encode("utf-8"))
        return mac.hexdigest()


class RecordRejected(ValueError):
    """A stored record that is not a well-typed record signed for its key. `record` is
    set when the fields parse but the signature is missing (`unsigned`: written before
    records were signed) or wrong (forged, another SECRET_KEY's, another key's)."""

    def __init__(
        self, message: str, *, record: KeyRecord | None = None, unsigned: bool = False
    ) -> None:
        super().__init__(message)
        self.record = record
        self.unsigned = unsigned


class KeyNotFound(Exception):
    """No key has this id."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"no API key with id {key_id!r}")
        self.key_id = key_id


@dataclass(frozen=True, slots=True)
class ResignReport:
    """What `KeyStore.resign` did: the records it signed, and why it refused others."""

    signed: list[KeyRecord]
    refused: list[str]


class KeyStore(abc.ABC):
    """Where key records live. Lookups are hot (every request); writes are rare (CLI).
    A record failing its signature check is never returned: an unknown key, logged."""

    @abc.abstractmethod
    async def find(self, key: str) -> KeyRecord | None:
        """The record of `key` (by digest), usable or not; None when unknown."""

    def cached(self, key: str) -> KeyRecord | None:
        """`find`'s answer for a known key when the store has it at hand, fresh, with no
        I/O and no await; None: ask `find` (unknown keys always do). Spares a request
        two coroutines (bench/README.md, round two)."""
        return None

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
        """Every record that passes its check, oldest first."""

    @abc.abstractmethod
    async def revoke(self, key_id: str) -> KeyRecord:
        """Mark the key revoked (idempotent), signed even if the record was unsigned or
        forged: a revoked record grants nothing. Raises KeyNotFound."""

    @abc.abstractmethod
    async def rotate(self, key_id: str, overlap_s: float) -> tuple[str, KeyRecord]:
        """A new key with the old one's name, scopes and lifetime (see `successor`); the
        old one stays valid for at most `overlap_s` more. Raises KeyNotFound, or
        ValueError when `successor` refuses or the record fails its check."""

    @abc.abstractmethod
    async def resign(self) -> ResignReport:
        """Sign the records written before records were signed. Records whose signature
        is wrong are left as they are and reported: they may be forged."""

    @abc.abstractmethod
    async def refresh(self) -> None:
        """Re-read the backing store now (SIGHUP)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections."""

    @property
    def stale(self) -> bool:
        """True while the store cannot be read and its cached records are too old to
        trust, so known keys are refused too (/ready: `keystore_stale`)."""
        return False


async def authenticate(store: KeyStore, key: str, now: float) -> KeyRecord:
    """The usable record of `key`. Raises InvalidApiKey when the key is malformed (checked
    first, so junk never costs a lookup), unknown, revoked or expired; ServiceUnavailable
    when the store cannot tell."""
    if not is_well_formed(key):
        raise InvalidApiKey(f"malformed API key {mask_key(key)}")
    record = store.cached(key) or await store.find(key)
    if record is None:
        raise InvalidApiKey(f"unknown API key {mask_key(key)}")
    if record.revoked:
        raise InvalidApiKey(f"revoked API key {record.id}")
    if not record.usable(now):
        raise InvalidApiKey(f"expired API key {record.id}")
    return record


def open_keystore(
    settings: Settings, *, redis: Redis | None = None, clock: Clock = time.time
) -> KeyStore:
    """The store the settings select. Raises ValueError without SECRET_KEY (or REDIS_URL)."""
    # Imported here: the stores import this module, and the client must not load them.
    from walletd.auth.store_file import FileKeyStore
    from walletd.auth.store_redis import RedisKeyStore
    from walletd.ops.redis import connect

    if not settings.secret_key:
        raise ValueError("SECRET_KEY is not set: API keys are stored as HMACs under it")
    hasher, signer = KeyHasher(settings.secret_key), RecordSigner(settings.secret_key)
    if settings.keystore == "redis":
        if not settings.redis_url:
            raise ValueError("KEYSTORE=redis needs REDIS_URL")
        return RedisKeyStore(
            redis or connect(settings.redis_url),
            settings.redis_prefix,
            hasher,
            signer,
            clock=clock,
            stale_max_s=settings.keystore_stale_max_s,
            owns_client=redis is None,  # the app's client is closed by the app
        )
    return FileKeyStore(Path(settings.api_keys_file), hasher, signer, clock=clock)


# Records: creation, rotation, (de)serialisation; shared by both stores.


def new_record(
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


def successor(
    old: KeyRecord, hasher: KeyHasher, now: float, overlap_s: float
) -> tuple[str, KeyRecord, KeyRecord]:
    """(new key, its record, the old record cut to the overlap and marked replaced).

    The new key is valid for as long from now as the old one was at its creation (its
    expires_at is not cut yet: a replaced key cannot be rotated again). Raises
    ValueError for a revoked, expired or already replaced key."""
    if old.revoked:
        raise ValueError(f"key {old.id} is revoked: create a new key instead of rotating it")
    if old.replaced_by is not None:
        raise ValueError(
            f"key {old.id} was already rotated: rotate its replacement {old.replaced_by}"
        )
    if not old.usable(now):
        raise ValueError(f"key {old.id} has expired: create a new key instead of rotating it")
    if not (math.isfinite(overlap_s) and overlap_s >= 0):
        raise ValueError("overlap must be zero or more seconds")
    lifetime = None if old.expires_at is None else old.expires_at - old.created_at
    expires_at = None if lifetime is None else now + lifetime
    key, new = new_record(hasher, old.name, old.scopes, now, expires_at)
    cutoff = now + overlap_s
    old_expiry = cutoff if old.expires_at is None else min(old.expires_at, cutoff)
    return key, new, dataclasses.replace(old, expires_at=old_expiry, replaced_by=new.id)


def record_to_dict(record: KeyRecord) -> dict[str, Any]:
    """The record's fields as JSON values (without a signature)."""
    return {
        "id": record.id,
        "name": record.name,
        "scopes": ordered_scopes(record.scopes),
        "prefix": record.prefix,
        "digest": record.digest,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "revoked": record.revoked,
        "replaced_by": record.replaced_by,
    }


def dump_record(record: KeyRecord, signer: RecordSigner) -> dict[str, Any]:
    """The record as stored: its fields and their signature."""
    return {**record_to_dict(record), "sig": signer.sign(record)}


def load_record(item: object, signer: RecordSigner, *, digest: str | None = None) -> KeyRecord:
    """A stored record, checked: well typed, signed, and (given `digest`) the record of
    the key with that digest. Raises RecordRejected otherwise."""
    try:
        record = record_from_dict(item)
    except ValueError as exc:
        raise RecordRejected(str(exc)) from None
    assert isinstance(item, Mapping)  # record_from_dict checked it
    signature = item.get("sig")
    if signature is None:
        raise RecordRejected(
            f"key record {record.id} is unsigned: {RESIGN_HINT}", record=record, unsigned=True
        )
    if not isinstance(signature, str) or not hmac.compare_digest(signer.sign(record), signature):
        raise RecordRejected(f"key record {record.id} fails its signature check", record=record)
    if digest is not None and not hmac.compare_digest(record.digest, digest):
        raise RecordRejected(f"key record {record.id} belongs to another key", record=record)
    return record


def record_from_dict(item: object) -> KeyRecord:
    """The fields of a record, unchecked signature. Raises ValueError unless well typed."""
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

    key_id = field("id", str)
    if not _ID_RE.fullmatch(key_id):
        raise ValueError("key record field 'id' is not k_ and 12 hex digits")
    digest = field("digest", str)
    if not _DIGEST_RE.fullmatch(digest):
        raise ValueError("key record field 'digest' is not a hex SHA-256")
    scopes = field("scopes", list)
    if not all(isinstance(s, str) for s in scopes):
        raise ValueError("key record field 'scopes' must list names")
    created_at = float(field("created_at", (int, float)))
    expires_at = field("expires_at", (int, float), optional=True)
    expires_at = None if expires_at is None else float(expires_at)
    if not all(math.isfinite(t) for t in (created_at, expires_at or 0.0)):
        raise ValueError("key record times must be finite")
    return KeyRecord(
        id=key_id,
        name=field("name", str),
        scopes=parse_scopes(scopes),
        prefix=field("prefix", str),
        digest=digest,
        created_at=created_at,
        expires_at=expires_at,
        revoked=field("revoked", bool),
        replaced_by=field("replaced_by", str, optional=True),
    )


def fresh(stamp: float, now: float, ttl: float) -> bool:
    """Within `ttl` after `stamp`; a clock that went backwards counts as stale."""
    return 0 <= now - stamp < ttl
