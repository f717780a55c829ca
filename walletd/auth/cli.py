"""`walletd keys create|list|revoke|rotate|resign`: manage API keys in the configured store."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError

from walletd.auth.format import DEFAULT_SCOPES, check_name, mask_key, ordered_scopes, parse_scopes
from walletd.auth.keys import KeyNotFound, KeyRecord, KeyStore, open_keystore
from walletd.config import Settings

# Same values as walletd.cli (importing it from here would be circular).
EXIT_FAILURE = 1
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: the store (Redis) cannot be reached
EXIT_CONFIG = 78  # EX_CONFIG

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DURATION_RE = re.compile(r"(\d+)([smhdw]?)")
_MAX_DURATION_S = 100 * 365 * 86_400  # keeps every date printable


def parse_duration(text: str) -> float:
    """Seconds from `90d`, `12h`, `30m`, `45s`, `2w` or plain seconds (`3600`)."""
    match = _DURATION_RE.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(f"bad duration {text!r}: expected e.g. 90d, 12h, 30m, 45s, 2w or seconds")
    seconds = int(match[1]) * _UNITS[match[2]]
    if seconds > _MAX_DURATION_S:
        raise ValueError(f"duration {text!r} is over 100 years")
    return float(seconds)


def _argument(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type: a ValueError becomes a usage error (exit 2) with its message."""

    def parse(text: str) -> Any:
        try:
            return convert(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _positive_duration(text: str) -> float:
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError(f"duration {text!r} must be more than zero")
    return seconds


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `keys` and its subcommands to the `walletd` parser."""
    keys = commands.add_parser(
        "keys",
        help="manage API keys",
        description="Manage API keys in API_KEYS_FILE, or in Redis when KEYSTORE=redis.",
    )
    sub = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="machine-readable output")

    create = sub.add_parser("create", parents=[output], help="create a key (shown only once)")
    create.add_argument(
        "--name", required=True, type=_argument(check_name), help="who or what the key is for"
    )
    create.add_argument(
        "--scopes",
        type=_argument(parse_scopes),
        default=frozenset(DEFAULT_SCOPES),
        help="comma-separated: stream, metrics, admin (default: stream)",
    )
    create.add_argument(
        "--expires", type=_argument(_positive_duration), metavar="DURATION", help="e.g. 90d"
    )
    sub.add_parser("list", parents=[output], help="list keys (never their secrets)")
    revoke = sub.add_parser("revoke", parents=[output], help="revoke a key now")
    revoke.add_argument("id")
    rotate = sub.add_parser("rotate", parents=[output], help="replace a key, keeping the old one")
    rotate.add_argument("id")
    rotate.add_argument(
        "--overlap",
        type=_argument(parse_duration),
        default=parse_duration("7d"),
        metavar="DURATION",
        help="how long the old key stays valid (default: 7d)",
    )
    sub.add_parser(
        "resign",
        parents=[output],
        help="sign the records written before records were signed (once, after upgrading)",
    )


def run(
    args: argparse.Namespace, settings: Settings, *, clock: Callable[[], float] = time.time
) -> int:
    """Run `walletd keys ...`; returns the exit status."""
    try:
        store = open_keystore(settings, clock=clock)
    except ValueError as exc:
        return _fail(str(exc), EXIT_CONFIG)
    return asyncio.run(_run(args, store, clock))


async def _run(args: argparse.Namespace, store: KeyStore, clock: Callable[[], float]) -> int:
    try:
        return await _COMMANDS[args.keys_command](args, store, clock)
    except KeyNotFound as exc:
        return _fail(str(exc), EXIT_FAILURE)
    except RedisError as exc:
        return _fail(f"Redis failed: {exc}", EXIT_UNAVAILABLE)
    except (ValueError, OSError) as exc:  # a refused change, an unreadable or unwritable file
        return _fail(str(exc), EXIT_FAILURE)
    finally:
        await store.close()


async def _create(args: argparse.Namespace, store: KeyStore, clock: Callable[[], float]) -> int:
    expires_at = None if args.expires is None else clock() + args.expires
    key, record = await store.create(args.name, args.scopes, expires_at)
    now = clock()
    if args.json:
        _print_json({"key": key, **_public(record, now)})
    else:
        print(key)
        print(_summary(record))
        print("Store the key now: it is not shown again.", file=sys.stderr)
    return 0


async def _list(args: argparse.Namespace, store: KeyStore, clock: Callable[[], float]) -> int:
    records = await store.list()
    now = clock()
    if args.json:
        _print_json([_public(r, now) for r in records])
        return 0
    if not records:
        print("no API keys")
        return 0
    header = ("ID", "NAME", "SCOPES", "PREFIX", "CREATED", "EXPIRES", "STATE")
    rows = [header] + [
        (
            r.id,
            r.name,
            ",".join(ordered_scopes(r.scopes)),
            mask_key(r.prefix),
            _when(r.created_at),
            _when(r.expires_at),
            _state(r, now),
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0


async def _revoke(args: argparse.Namespace, store: KeyStore, clock: Callable[[], float]) -> int:
    record = await store.revoke(args.id)
    if args.json:
        _print_json(_public(record, clock()))
    else:
        print(f"revoked {record.id} ({record.name})")
    return 0


async def _rotate(args: argparse.Namespace, store: KeyStore, clock: Callable[[], float]) -> int:
    key, record = await store.rotate(args.id, args.overlap)
    old = await store.get(args.id)
    assert old is not None  # rotate just wrote it
    now = clock()
    if args.json:
        _print_json({"key": key, **_public(record, now), "previous": _public(old, now)})
    else:
        print(key)
        print(_summary(record))
        print(f"the old key {old.id} stays valid until {_when(old.expires_at)}")
        print("Store the key now: it is not shown again.", file=sys.stderr)
    return 0


async def _resign(args: argparse.Namespace, store: KeyStore, clock: Callable[[], float]) -> int:
    """Exit 1 when a record was refused: its signature is wrong, so it may be forged."""
    report = await store.resign()
    now = clock()
    if args.json:
        _print_json({"signed": [_public(r, now) for r in report.signed], "refused": report.refused})
    else:
        for record in report.signed:
            print(f"signed {_summary(record)}")
        print(f"{len(report.signed)} record(s) signed; check them above: they are trusted now")
        for reason in report.refused:
            print(f"walletd keys: not signed: {reason}", file=sys.stderr)
    return EXIT_FAILURE if report.refused else 0


_COMMANDS = {
    "create": _create,
    "list": _list,
    "revoke": _revoke,
    "rotate": _rotate,
    "resign": _resign,
}


def _public(record: KeyRecord, now: float) -> dict[str, Any]:
    """What output may show of a record: no digest."""
    return {
        "id": record.id,
        "name": record.name,
        "scopes": ordered_scopes(record.scopes),
        "prefix": record.prefix,
        "created_at": _when(record.created_at),
        "expires_at": None if record.expires_at is None else _when(record.expires_at),
        "revoked": record.revoked,
        "state": _state(record, now),
    }


def _summary(record: KeyRecord) -> str:
    scopes, expires = ",".join(ordered_scopes(record.scopes)), _when(record.expires_at)
    return f"id: {record.id}  name: {record.name}  scopes: {scopes}  expires: {expires}"


def _state(record: KeyRecord, now: float) -> str:
    if record.revoked:
        return "revoked"
    return "active" if record.usable(now) else "expired"


def _when(timestamp: float | None) -> str:
    """ISO-8601 UTC to the second, or `never`."""
    if timestamp is None:
        return "never"
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def _fail(message: str, status: int) -> int:
    print(f"walletd keys: {message}", file=sys.stderr)
    return status
