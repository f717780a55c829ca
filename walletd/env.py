"""The setting table's machinery: typed rows (Spec), reading and validating environment
variables (EnvReader), and masking secrets and the credentials inside URLs.

config.py declares the settings with `setting(...)`; nothing here knows a setting by name.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from walletd.urls import MASK, mask_redis_password, mask_url_path

T = TypeVar("T")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

# SECRET_KEY in production (SPEC §6): 32+ characters, and not trivially repetitive, which
# is written down as: at least 8 distinct characters, and not one block repeated (no
# period of half the length or less: "aaaa…", "abab…", "abcdefgh" * 4). A generated key
# (secrets.token_urlsafe(48)) has some 40 distinct characters and no period.
MIN_SECRET_LENGTH = 32
MIN_SECRET_DISTINCT = 8
# ALERT_WEBHOOK_SECRET: a Standard Webhooks secret, `whsec_` + base64 of the HMAC key
# (their libraries issue 24 to 64 random bytes).
WEBHOOK_SECRET_PREFIX = "whsec_"
MIN_WEBHOOK_KEY_BYTES = 24

# How a variable's text becomes a value (EnvReader.convert):
#   text, int, float, flag, choice   plain values; int/float within lo..hi
#   base_url   http(s) without query, fragment or credentials (HELIUS_*_URL: no key inside)
#   url        http(s) that may carry a token anywhere: shown as scheme://host[:port]/***
#   redis_url  redis://, rediss://, unix://: shown with its password as ***
#   networks   comma-separated IPs or CIDRs       origins  comma-separated exact origins
#   webhook_secret   whsec_ + base64 of 24+ bytes
Kind = Literal[
    "text",
    "int",
    "float",
    "flag",
    "choice",
    "base_url",
    "url",
    "redis_url",
    "networks",
    "origins",
    "webhook_secret",
]
_NOT_ECHOED = frozenset({"base_url", "url", "redis_url", "webhook_secret"})
SPEC_KEY = "walletd.setting"


@dataclass(frozen=True, slots=True)
class Spec:
    """One row of the setting table: an environment variable and the field it fills.

    `field` and `default` are filled in from the dataclass field (see TABLE), so the
    dataclass default is the only default. `derive` computes the default from the other
    settings when the variable is unset (e.g. from ENV); the dataclass default must equal
    it for an empty environment (tested), and `derived_doc` is how the README states it.
    """

    env: str
    kind: Kind
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    secret: bool = False  # printed as ***, never echoed in a problem
    aliases: tuple[str, ...] = ()  # deprecated names, read when `env` is unset
    derive: Callable[[Mapping[str, Any]], Any] | None = None
    derived_doc: str | None = None
    field: str = ""
    default: Any = None

    @property
    def echo(self) -> bool:
        """May a problem quote the raw value? Not for secrets, nor URLs (keys ride in them)."""
        return not self.secret and self.kind not in _NOT_ECHOED

    def mask(self, value: Any) -> Any:
        """`value` as it may be shown: secrets ***, credentials inside URLs ***."""
        if value is None:
            return None
        if self.secret:
            return MASK
        if self.kind == "url":
            return mask_url_path(value)
        if self.kind == "redis_url":
            return mask_redis_password(value)
        return value


def setting(
    env: str,
    default: T,
    kind: Kind,
    *,
    lo: float | None = None,
    hi: float | None = None,
    choices: tuple[str, ...] = (),
    secret: bool = False,
    aliases: tuple[str, ...] = (),
    derive: Callable[[Mapping[str, Any]], Any] | None = None,
    derived_doc: str | None = None,
) -> T:
    """A Settings field read from `env`; its metadata is its row of the table."""
    spec = Spec(env, kind, lo, hi, choices, secret, aliases, derive, derived_doc)
    return field(
        default=default,
        repr=not secret and kind not in ("url", "redis_url"),
        metadata={SPEC_KEY: spec},
    )


class ConfigError(Exception):
    """The environment does not describe a runnable walletd; lists every problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))
        self.problems = problems


def variable_of(problem: str) -> str:
    """The variable a problem starts with (`NAME=...: why` or `NAME: why`)."""
    return re.split(r"[=:]", problem, maxsplit=1)[0]


def env_text(value: Any) -> str:
    """A value as an EnvironmentFile writes it: unset is empty, lists comma-separated."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value)


def is_repetitive(secret: str) -> bool:
    """The rule of MIN_SECRET_DISTINCT: too few distinct characters, or periodic."""
    if len(set(secret)) < MIN_SECRET_DISTINCT:
        return True
    return any(secret[k:] == secret[:-k] for k in range(1, len(secret) // 2 + 1))


def webhook_secret_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: `whsec_` + base64 (padding optional).

    Raises ValueError, without quoting the secret, when the prefix is missing, the rest is
    not base64 or the key is shorter than MIN_WEBHOOK_KEY_BYTES.
    """
    if not secret.startswith(WEBHOOK_SECRET_PREFIX):
        raise ValueError(f"expected {WEBHOOK_SECRET_PREFIX}<base64> (a Standard Webhooks secret)")
    encoded = secret.removeprefix(WEBHOOK_SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        raise ValueError(f"the part after {WEBHOOK_SECRET_PREFIX} is not base64") from None
    if len(key) < MIN_WEBHOOK_KEY_BYTES:
        raise ValueError(f"the key is {len(key)} bytes, expected {MIN_WEBHOOK_KEY_BYTES} or more")
    return key


class EnvReader:
    """Typed access to an environment mapping that records problems instead of raising."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self.problems: list[str] = []
        self.notices: list[str] = []

    def _get(self, name: str, default: T, convert: Callable[[str], T], *, echo: bool = True) -> T:
        """`echo=False` keeps the value out of the problem (it may carry a credential)."""
        raw = self._env.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            return convert(raw.strip())
        except ValueError as exc:
            self.problems.append(f"{name}={raw!r}: {exc}" if echo else f"{name}=...: {exc}")
            return default

    def _set(self, name: str) -> bool:
        raw = self._env.get(name)
        return raw is not None and raw.strip() != ""

    def raw(self, spec: Spec) -> str | None:
        """The name `spec` is read from: its own, else a deprecated alias, else None."""
        if self._set(spec.env):
            return spec.env
        return next((alias for alias in spec.aliases if self._set(alias)), None)

    def read(self, spec: Spec) -> Any:
        """The value of one row of the table: its default when unset; a deprecated alias
        is read when the new name is unset, and noted either way."""
        name = self.raw(spec) or spec.env
        for alias in spec.aliases:
            if self._set(alias) and alias == name:
                self.notices.append(f"{alias} is deprecated: rename it {spec.env}")
            elif self._set(alias):
                self.notices.append(f"{alias} is deprecated and ignored: {spec.env} is set")
        return self._get(name, spec.default, _converter(spec), echo=spec.echo)

    def flag(self, name: str, default: bool) -> bool:
        return self._get(name, default, _flag)

    def raise_if_problems(self) -> None:
        if self.problems:
            raise ConfigError(self.problems)


def _converter(spec: Spec) -> Callable[[str], Any]:
    if spec.kind == "int":
        return _bounded_integer(spec)
    if spec.kind == "float":
        return _bounded_number(spec)
    if spec.kind == "choice":
        return _choice(spec.choices)
    return _CONVERTERS[spec.kind]


def _text(raw: str) -> str:
    return raw


def _flag(raw: str) -> bool:
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ValueError("expected true or false")


def _choice(options: tuple[str, ...]) -> Callable[[str], str]:
    by_lower = {option.lower(): option for option in options}

    def convert(raw: str) -> str:
        if raw.lower() not in by_lower:
            raise ValueError(f"expected one of {', '.join(options)}")
        return by_lower[raw.lower()]

    return convert


def _bounded_integer(spec: Spec) -> Callable[[str], int]:
    def convert(raw: str) -> int:
        try:
            value = int(raw, 10)
        except ValueError:
            raise ValueError("expected an integer") from None
        if not _within(spec, value):
            raise ValueError(f"expected {spec.lo:g}..{spec.hi:g}")
        return value

    return convert


def _bounded_number(spec: Spec) -> Callable[[str], float]:
    def convert(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError("expected a number") from None
        if not _within(spec, value):  # also rejects nan
            raise ValueError(f"expected {spec.lo:g}..{spec.hi:g}")
        return value

    return convert


def _within(spec: Spec, value: float) -> bool:
    assert spec.lo is not None and spec.hi is not None, f"{spec.env}: a number needs bounds"
    return spec.lo <= value <= spec.hi


def _http_url(raw: str) -> str:
    parsed = urlsplit(raw)
    try:
        parsed.port  # noqa: B018  (raises ValueError for a port that is not a number)
    except ValueError:
        raise ValueError("expected an http(s) URL with a numeric port") from None
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError("expected an http(s) URL")
    return raw


def _base_url(raw: str) -> str:
    """A base URL: no query, fragment or credentials (a key belongs in its own variable)."""
    parsed = urlsplit(_http_url(raw))
    if parsed.query or parsed.fragment or parsed.username or parsed.password:
        raise ValueError("expected a base URL without query, fragment or credentials")
    return raw.rstrip("/")


def _redis_url(raw: str) -> str:
    parsed = urlsplit(raw)
    if parsed.scheme not in ("redis", "rediss", "unix"):
        raise ValueError("expected a redis://, rediss:// or unix:// URL")
    if parsed.scheme != "unix" and not parsed.hostname:
        raise ValueError("expected a host")
    return raw


def _networks(raw: str) -> tuple[IPNetwork, ...]:
    """A comma-separated list of addresses or CIDR networks."""
    out = []
    for item in filter(None, (part.strip() for part in raw.split(","))):
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or network") from None
    return tuple(out)


def _origins(raw: str) -> tuple[str, ...]:
    """Comma-separated exact origins (scheme://host[:port], nothing after), or "*"."""
    out = []
    for item in filter(None, (part.strip() for part in raw.split(","))):
        if item == "*":
            out.append(item)
            continue
        if "*" in item:
            raise ValueError(
                f"{item!r} has a wildcard: aiohttp-cors matches exact origins only, so "
                "list every origin (https://host[:port])"
            )
        parsed = urlsplit(item)
        try:
            parsed.port  # noqa: B018
        except ValueError:
            raise ValueError(f"{item!r} is not an origin: bad port") from None
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"{item!r} is not an origin (scheme://host[:port])")
        if parsed.path or parsed.query or parsed.fragment or "@" in parsed.netloc:
            raise ValueError(f"{item!r} is not an origin: nothing after host[:port]")
        out.append(item)
    return tuple(out)


def _webhook_secret(raw: str) -> str:
    webhook_secret_key(raw)
    return raw


_CONVERTERS: dict[str, Callable[[str], Any]] = {
    "text": _text,
    "flag": _flag,
    "base_url": _base_url,
    "url": _http_url,
    "redis_url": _redis_url,
    "networks": _networks,
    "origins": _origins,
    "webhook_secret": _webhook_secret,
}
