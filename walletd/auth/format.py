"""The shape of an API key (SPEC §3): `wd_` and 32 characters [A-Za-z0-9]; how it is
generated, and how much of it a log line may show; the names and scopes a key may have.

Pure and tiny, so the client (`walletd stream`) masks keys without importing the server.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Iterable

KEY_PREFIX = "wd_"
KEY_BODY_LENGTH = 32
PREFIX_LENGTH = 10  # what logs and `keys list` may show of a key
_ALPHABET = string.ascii_letters + string.digits
_KEY_RE = re.compile(r"wd_[A-Za-z0-9]{32}")
SCOPES = ("stream", "metrics", "admin")
DEFAULT_SCOPES = ("stream",)
_MAX_NAME_LENGTH = 100


def generate_key() -> str:
    """A new key: `wd_` and 32 characters [A-Za-z0-9] from the OS CSPRNG (190 bits)."""
    return KEY_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(KEY_BODY_LENGTH))


def is_well_formed(key: str) -> bool:
    """True when `key` has the shape of a walletd key (says nothing of its validity)."""
    return _KEY_RE.fullmatch(key) is not None


def mask_key(key: str) -> str:
    """At most the first 10 characters and `...`, printable only: safe for any log line."""
    shown = key[:PREFIX_LENGTH]
    if not shown.isprintable():  # rare: a real key's prefix is printed as it is (0.2 µs)
        shown = "".join(c if c.isprintable() else "?" for c in shown)
    return shown + "..."


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
