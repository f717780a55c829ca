"""The file key store: signed records in one JSON file, written atomically under a lock."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import fcntl
import hmac
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

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

log = logging.getLogger("walletd.keys")

T = TypeVar("T")
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
class _Rejected:
    """An entry that failed its check: kept verbatim, so no rewrite loses it."""

    item: Any
    error: RecordRejected


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """One consistent reading of the file, swapped in whole."""

    by_digest: dict[str, KeyRecord]
    by_id: dict[str, KeyRecord]
    stamp: Stamp
    rejected: tuple[_Rejected, ...] = ()

    @classmethod
    def of(
        cls, records: Iterable[KeyRecord], stamp: Stamp, rejected: Iterable[_Rejected] = ()
    ) -> _Snapshot:
        by_id = {r.id: r for r in records}
        return cls({r.digest: r for r in by_id.values()}, by_id, stamp, tuple(rejected))


def _stamp(path: Path) -> Stamp:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _load(path: Path, signer: RecordSigner) -> _Snapshot:
    """Read the file. Missing means no keys; raises KeyFileError when the file as a whole
    is unusable. An entry failing its check is set aside, not fatal: one bad record must
    not take every key down."""
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
    records, rejected = [], []
    for item in doc["keys"]:
        try:
            records.append(load_record(item, signer))
        except RecordRejected as exc:
            if exc.record is None:  # not even a record: a hand edit gone wrong
                raise KeyFileError(stamp, f"{path}: {exc}") from exc
            rejected.append(_Rejected(item, exc))
    return _Snapshot.of(records, stamp, rejected)


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


@dataclass(slots=True)
class _Contents:
    """The file's records, for a change under the write lock to edit."""

    records: dict[str, KeyRecord]
    rejected: list[_Rejected]


class FileKeyStore(KeyStore):
    """Records in a JSON file, `{"version": 1, "keys": [...]}`, each signed.

    Lookups are dict lookups on an in-memory snapshot; the file is re-stat'ed at most
    once per `check_interval_s` and re-read when it changed, so the command's writes
    reach a running server within that interval. A file that cannot be read leaves the
    last good snapshot in place: a bad edit must not lock every client out.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        hasher: KeyHasher,
        signer: RecordSigner,
        *,
        clock: Clock = time.time,
        check_interval_s: float = 1.0,
    ) -> None:
        self._path = Path(path)
        self._lock_path = self._path.with_name(self._path.name + ".lock")
        self._hasher = hasher
        self._signer = signer
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
        return self._find_in_snapshot(key)

    def cached(self, key: str) -> KeyRecord | None:
        if self._reloading.locked() or not fresh(
            self._checked_at, self._clock(), self._check_interval_s
        ):
            return None  # `find` checks the file (or waits for the reload under way)
        return self._find_in_snapshot(key)

    def _find_in_snapshot(self, key: str) -> KeyRecord | None:
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
        snapshot = await asyncio.to_thread(_load, self._path, self._signer)  # not a stale copy
        self._snapshot = snapshot
        _report(snapshot)
        return sorted(snapshot.by_id.values(), key=lambda r: r.created_at)

    async def create(
        self, name: str, scopes: Iterable[str], expires_at: float | None
    ) -> tuple[str, KeyRecord]:
        key, record = new_record(self._hasher, name, scopes, self._clock(), expires_at)

        def add(contents: _Contents) -> None:
            contents.records[record.id] = record

        await asyncio.to_thread(self._write, add)
        return key, record

    async def revoke(self, key_id: str) -> KeyRecord:
        def mark(contents: _Contents) -> KeyRecord:
            old = contents.records.get(key_id)
            if old is None:  # an unsigned or forged record may be revoked: that signs it
                old = _take_rejected(contents, key_id)
            if old is None:
                raise KeyNotFound(key_id)
            contents.records[key_id] = dataclasses.replace(old, revoked=True)
            return contents.records[key_id]

        return await asyncio.to_thread(self._write, mark)

    async def rotate(self, key_id: str, overlap_s: float) -> tuple[str, KeyRecord]:
        now = self._clock()

        def swap(contents: _Contents) -> tuple[str, KeyRecord]:
            old = contents.records.get(key_id)
            if old is None:
                for entry in contents.rejected:
                    if entry.error.record is not None and entry.error.record.id == key_id:
                        raise ValueError(str(entry.error))
                raise KeyNotFound(key_id)
            key, new, contents.records[key_id] = successor(old, self._hasher, now, overlap_s)
            contents.records[new.id] = new
            return key, new

        return await asyncio.to_thread(self._write, swap)

    async def resign(self) -> ResignReport:
        def sign(contents: _Contents) -> ResignReport:
            report = ResignReport([], [])
            for entry in list(contents.rejected):
                record = entry.error.record
                if entry.error.unsigned and record is not None:
                    contents.rejected.remove(entry)
                    contents.records[record.id] = record
                    report.signed.append(record)
                else:
                    report.refused.append(str(entry.error))
            return report

        return await asyncio.to_thread(self._write, sign)

    async def refresh(self) -> None:
        self._checked_at = self._clock()
        async with self._reloading:
            try:
                snapshot = await asyncio.to_thread(_load, self._path, self._signer)
            except KeyFileError as exc:
                if exc.token != self._reported:
                    log.error(
                        "keystore_unreadable", extra={"path": str(self._path), "error": str(exc)}
                    )
                    self._reported = exc.token
            else:
                self._snapshot = snapshot
                self._reported = _NOTHING
                _report(snapshot)  # once per change of the file, as the reload is

    async def close(self) -> None:
        pass

    async def _check(self) -> None:
        """Reload when the file changed; the stat is microseconds, so it stays inline."""
        now = self._clock()
        if fresh(self._checked_at, now, self._check_interval_s):
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

    def _write(self, change: Callable[[_Contents], T]) -> T:
        """Read-modify-write under an exclusive lock, so concurrent writers lose nothing.

        Records are signed as they are written; entries that fail their check are
        written back as they were. Raises KeyFileError when the current file is
        unusable: overwriting it would drop every key in it.
        """
        lock_fd = os.open(self._lock_path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            snapshot = _load(self._path, self._signer)
            contents = _Contents(dict(snapshot.by_id), list(snapshot.rejected))
            result = change(contents)
            items = [dump_record(r, self._signer) for r in contents.records.values()]
            items += [entry.item for entry in contents.rejected]
            data = json.dumps({"version": 1, "keys": items}, indent=2).encode() + b"\n"
            stamp = _replace_atomically(self._path, data)
        finally:
            os.close(lock_fd)  # releases the lock
        self._snapshot = _Snapshot.of(contents.records.values(), stamp, contents.rejected)
        return result


def _take_rejected(contents: _Contents, key_id: str) -> KeyRecord | None:
    """Remove the set-aside entry of `key_id` and return its fields (None: no such entry)."""
    for entry in contents.rejected:
        if entry.error.record is not None and entry.error.record.id == key_id:
            contents.rejected.remove(entry)
            return entry.error.record
    return None


def _report(snapshot: _Snapshot) -> None:
    """One ERROR line per entry refused (never a key or digest: ids are not secrets)."""
    for entry in snapshot.rejected:
        log.error("keystore_record_rejected", extra={"store": "file", "error": str(entry.error)})
