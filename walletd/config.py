"""Settings: one frozen object built from the environment, validated all at once."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import ipaddress
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")

ENVIRONMENTS = ("development", "production", "test")
LOG_FORMATS = ("json", "text")
EVENT_LOOPS = ("uvloop", "asyncio")
# uvloop is a dependency on Linux only (setup.cfg); elsewhere the stdlib loop is the default.
DEFAULT_EVENT_LOOP = "uvloop" if sys.platform == "linux" else "asyncio"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
KEYSTORES = ("file", "redis")
UPSTREAMS = ("helius", "rpc", "demo")
RPC_HISTORY_METHODS = ("auto", "gtfa", "signatures")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
MASK = "***"

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
_SPEC = "walletd.setting"


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
        metadata={_SPEC: spec},
    )


def _is_development(values: Mapping[str, Any]) -> bool:
    return bool(values["env"] == "development")


def _default_upstream(values: Mapping[str, Any]) -> str:
    if values["helius_key"]:
        return "helius"
    return "rpc" if values["rpc_url"] else "demo"


class ConfigError(Exception):
    """The environment does not describe a runnable walletd; lists every problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of the SPEC, one field each; the field's metadata is its row of the
    setting table (environment name, kind, bounds, secrecy). The defaults are the SPEC's,
    as in development: `Settings() == Settings.from_env({})`."""

    env: str = setting("ENV", "development", "choice", choices=ENVIRONMENTS)
    debug: bool = setting("DEBUG", False, "flag")
    host: str = setting("HOST", "127.0.0.1", "text")
    port: int = setting("PORT", 8080, "int", lo=0, hi=65535)
    log_level: str = setting("LOG_LEVEL", "INFO", "choice", choices=LOG_LEVELS)
    log_format: str = setting("LOG_FORMAT", "json", "choice", choices=LOG_FORMATS)
    event_loop: str = setting("WALLETD_LOOP", DEFAULT_EVENT_LOOP, "choice", choices=EVENT_LOOPS)
    # Stream protocol (SPEC §1, §5)
    sse_retry_ms: int = setting("SSE_RETRY_MS", 3000, "int", lo=0, hi=3_600_000)
    sse_batch_size: int = setting("SSE_BATCH_SIZE", 100, "int", lo=1, hi=1000)
    sse_progress_throttle_s: float = setting("SSE_PROGRESS_THROTTLE", 0.5, "float", lo=0, hi=60)
    sse_keepalive_interval_s: float = setting(
        "SSE_KEEPALIVE_INTERVAL", 15.0, "float", lo=0.01, hi=3600
    )
    sse_max_stream_duration_s: float = setting(
        "SSE_MAX_STREAM_DURATION", 600.0, "float", lo=0.01, hi=86_400
    )
    max_wallet_trades: int = setting("MAX_WALLET_TRADES", 20000, "int", lo=1, hi=10_000_000)
    shutdown_grace_s: float = setting("SHUTDOWN_GRACE", 10.0, "float", lo=0, hi=3600)
    drain_delay_s: float = setting("DRAIN_DELAY", 0.0, "float", lo=0, hi=3600)
    max_streams: int = setting("MAX_STREAMS", 10000, "int", lo=1, hi=1_000_000)
    history_memory_mb: int = setting("HISTORY_MEMORY_MB", 256, "int", lo=1, hi=1_048_576)
    # Upstreams and the demo source (SPEC §1 live follow, §4)
    upstream: str = setting(
        "UPSTREAM",
        "demo",
        "choice",
        choices=UPSTREAMS,
        derive=_default_upstream,
        derived_doc="`helius` with `HELIUS_KEY`, else `rpc` with `RPC_URL`, else `demo`",
    )
    helius_key: str | None = setting("HELIUS_KEY", None, "text", secret=True)
    helius_rpc_url: str = setting("HELIUS_RPC_URL", "https://mainnet.helius-rpc.com", "base_url")
    helius_api_url: str = setting("HELIUS_API_URL", "https://api.helius.xyz", "base_url")
    rpc_url: str | None = setting("RPC_URL", None, "url")
    rpc_history_method: str = setting(
        "RPC_HISTORY_METHOD", "auto", "choice", choices=RPC_HISTORY_METHODS
    )
    upstream_rps: float = setting(
        "UPSTREAM_RPS", 10.0, "float", lo=0.01, hi=10_000, aliases=("HELIUS_RPS",)
    )
    upstream_concurrency: int = setting(
        "UPSTREAM_CONCURRENCY", 4, "int", lo=1, hi=256, aliases=("HELIUS_CONCURRENCY",)
    )
    upstream_timeout_s: float = setting(
        "UPSTREAM_TIMEOUT", 30.0, "float", lo=0.1, hi=600, aliases=("HELIUS_TIMEOUT",)
    )
    upstream_max_retries: int = setting(
        "UPSTREAM_MAX_RETRIES", 3, "int", lo=0, hi=20, aliases=("HELIUS_MAX_RETRIES",)
    )
    upstream_retry_deadline_s: float = setting(
        "UPSTREAM_RETRY_DEADLINE", 20.0, "float", lo=0, hi=3600, aliases=("HELIUS_RETRY_DEADLINE",)
    )
    follow_poll_interval_s: float = setting("FOLLOW_POLL_INTERVAL", 2.0, "float", lo=0.1, hi=3600)
    demo_latency_ms: int = setting("DEMO_LATENCY_MS", 0, "int", lo=0, hi=3_600_000)
    demo_live_interval_s: float = setting("DEMO_LIVE_INTERVAL", 10.0, "float", lo=0.1, hi=86_400)
    cache_ttl_s: float = setting("CACHE_TTL", 60.0, "float", lo=0, hi=86_400)
    cache_max_trades: int = setting("CACHE_MAX_TRADES", 200_000, "int", lo=0, hi=100_000_000)
    # Keys and limits (SPEC §3)
    secret_key: str | None = setting("SECRET_KEY", None, "text", secret=True)
    api_key_required: bool = setting(
        "API_KEY_REQUIRED",
        False,
        "flag",
        derive=lambda values: not _is_development(values),
        derived_doc="`false` in development, else `true`",
    )
    api_keys_file: str = setting("API_KEYS_FILE", "api_keys.json", "text")
    keystore: str = setting("KEYSTORE", "file", "choice", choices=KEYSTORES)
    keystore_stale_max_s: float = setting("KEYSTORE_STALE_MAX", 300.0, "float", lo=1, hi=86_400)
    redis_url: str | None = setting("REDIS_URL", None, "redis_url")
    redis_prefix: str = setting("REDIS_PREFIX", "walletd:", "text")
    rate_limit_requests: int = setting("RATE_LIMIT_REQUESTS", 50, "int", lo=1, hi=1_000_000)
    rate_limit_window_s: float = setting("RATE_LIMIT_WINDOW", 60.0, "float", lo=0.001, hi=86_400)
    rate_limit_streaming_connections: int = setting(
        "RATE_LIMIT_STREAMING_CONNECTIONS", 10, "int", lo=1, hi=100_000
    )
    stream_lease_ttl_s: float = setting("STREAM_LEASE_TTL", 30.0, "float", lo=0.1, hi=3600)
    auth_failure_limit: int = setting("AUTH_FAILURE_LIMIT", 20, "int", lo=1, hi=1_000_000)
    trusted_proxies: tuple[IPNetwork, ...] = setting("TRUSTED_PROXIES", (), "networks")
    # Observability (SPEC §5, §7)
    metrics_port: int | None = setting("METRICS_PORT", None, "int", lo=1, hi=65535)
    stale_stream_timeout_s: float = setting(
        "STALE_STREAM_TIMEOUT", 300.0, "float", lo=0.1, hi=86_400
    )
    system_metrics_interval_s: float = setting(
        "SYSTEM_METRICS_INTERVAL", 15.0, "float", lo=0.1, hi=3600
    )
    error_rate_window_s: float = setting("ERROR_RATE_WINDOW", 300.0, "float", lo=1, hi=86_400)
    alert_error_rate: float = setting("ALERT_ERROR_RATE", 10.0, "float", lo=0, hi=100)  # percent
    alert_webhook_url: str | None = setting("ALERT_WEBHOOK_URL", None, "url")
    alert_webhook_secret: str | None = setting(
        "ALERT_WEBHOOK_SECRET", None, "webhook_secret", secret=True
    )
    sentry_dsn: str | None = setting("SENTRY_DSN", None, "url")
    # HTTP surface (SPEC §6)
    allowed_origins: tuple[str, ...] = setting(
        "ALLOWED_ORIGINS",
        ("*",),
        "origins",
        derive=lambda values: ("*",) if _is_development(values) else (),
        derived_doc="`*` in development, else none",
    )
    # Feature flags (SPEC §6): these are the environment's; FEATURES_FILE overrides them
    # and is re-read on SIGHUP (walletd/features.py).
    feature_progress_events: bool = setting("FEATURE_PROGRESS_EVENTS", True, "flag")
    feature_demo_page: bool = setting(
        "FEATURE_DEMO_PAGE",
        True,
        "flag",
        derive=_is_development,
        derived_doc="`true` in development, else `false`",
    )
    features_file: str | None = setting("FEATURES_FILE", None, "text")
    # Not a setting: what from_env noticed about the names used (deprecated aliases).
    notices: tuple[str, ...] = field(default=(), compare=False)

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def alert_webhook_key(self) -> bytes | None:
        """The HMAC key of ALERT_WEBHOOK_SECRET (validated by from_env), or None."""
        if self.alert_webhook_secret is None:
            return None
        return webhook_secret_key(self.alert_webhook_secret)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `env` (default: the process environment), row by row of
        the setting table.

        Raises ConfigError naming every invalid variable, never just the first, and never
        quoting a secret or a URL.
        """
        reader = EnvReader(os.environ if env is None else env)
        values: dict[str, Any] = {}
        derived: list[Spec] = []
        for spec in TABLE:
            if spec.derive is not None and reader.raw(spec) is None:
                derived.append(spec)
            else:
                values[spec.field] = reader.read(spec)
        for spec in derived:
            values[spec.field] = spec.derive(values)  # type: ignore[misc]
        settings = cls(**values, notices=tuple(reader.notices))
        named = {_variable(problem) for problem in reader.problems}
        # A variable that failed to parse is reported once: the rules below saw its default.
        reader.problems += [p for p in settings._inconsistencies() if _variable(p) not in named]
        reader.raise_if_problems()
        return settings

    def warnings(self, *, host: str | None = None) -> list[str]:
        """Allowed but worth a line in the log at startup. `host`: the listen address
        when the command line overrides HOST."""
        out = list(self.notices)
        listen = self.host if host is None else host
        if self.env == "development" and self.upstream != "demo" and not is_loopback(listen):
            out.append(
                f"HOST={listen}: a development server (no API keys, CORS *) is reachable "
                f"beyond this machine and spends the {self.upstream} upstream's quota; "
                "listen on 127.0.0.1, or set ENV=production"
            )
        if self.is_production and not self.redis_url:
            out.append(
                "REDIS_URL is not set: rate limits, stream caps and the history cache are "
                "per process"
            )
        elif self.is_production and self.redis_url and not redis_has_credentials(self.redis_url):
            out.append(
                "REDIS_URL has no password or ACL user: whoever reaches Redis can change "
                "limits and keys"
            )
        return out

    def _production_problems(self) -> list[str]:
        """SPEC §6: what ENV=production refuses to start without."""
        problems = []
        secret = self.secret_key or ""
        if len(secret) < MIN_SECRET_LENGTH:
            problems.append(f"SECRET_KEY: production needs {MIN_SECRET_LENGTH} or more characters")
        elif is_repetitive(secret):
            problems.append(
                f"SECRET_KEY: too repetitive (fewer than {MIN_SECRET_DISTINCT} distinct "
                "characters, or one block repeated); generate one with "
                "secrets.token_urlsafe(48)"
            )
        if not self.api_key_required:
            problems.append("API_KEY_REQUIRED: production needs true")
        if not self.allowed_origins:
            problems.append("ALLOWED_ORIGINS: production needs at least one https origin")
        for origin in self.allowed_origins:
            if not origin.startswith("https://"):
                problems.append(
                    f"ALLOWED_ORIGINS: production allows exact https origins only "
                    f"(https://host[:port]), not {origin!r}"
                )
        if self.upstream == "demo":
            problems.append(
                "UPSTREAM: production refuses demo; set UPSTREAM=helius with HELIUS_KEY, "
                "or UPSTREAM=rpc with RPC_URL"
            )
        for name, url in (
            ("HELIUS_RPC_URL", self.helius_rpc_url),
            ("HELIUS_API_URL", self.helius_api_url),
            ("RPC_URL", self.rpc_url),
        ):
            parsed = urlsplit(url or "")
            if url and parsed.scheme != "https" and not is_loopback(parsed.hostname):
                problems.append(f"{name}: production needs https (http only to a loopback address)")
        if self.alert_webhook_url and not self.alert_webhook_url.startswith("https://"):
            problems.append("ALERT_WEBHOOK_URL: production needs an https URL")
        if self.debug:
            problems.append("DEBUG: must be off in production")
        if self.sentry_dsn and not self.sentry_dsn.startswith("https://"):
            problems.append("SENTRY_DSN: production needs an https DSN")
        return problems

    def _inconsistencies(self) -> list[str]:
        """Problems of combinations, each starting with the variable to change."""
        problems = self._production_problems() if self.is_production else []
        if self.api_key_required and not self.secret_key and not self.is_production:
            problems.append("SECRET_KEY: required when API_KEY_REQUIRED=true (keys are HMACs)")
        if self.drain_delay_s and self.drain_delay_s >= self.shutdown_grace_s:
            problems.append("DRAIN_DELAY: must be less than SHUTDOWN_GRACE (streams need time)")
        if self.upstream == "helius" and not self.helius_key:
            problems.append("HELIUS_KEY: UPSTREAM=helius needs it")
        if self.upstream == "rpc" and not self.rpc_url:
            problems.append("RPC_URL: UPSTREAM=rpc needs it")
        if self.keystore == "redis" and not self.redis_url:
            problems.append("KEYSTORE=redis: needs REDIS_URL")
        if not self.redis_prefix.strip(":"):
            problems.append("REDIS_PREFIX: must not be empty")
        if self.alert_webhook_url and not self.alert_webhook_secret:
            problems.append(
                "ALERT_WEBHOOK_SECRET: ALERT_WEBHOOK_URL needs it (alerts are signed with it)"
            )
        return problems

    def masked_env(self) -> dict[str, Any]:
        """The settings keyed by environment name, sorted, as JSON values, with secrets
        and the credentials inside URLs masked: what `check-config --json` prints."""
        out = {}
        for spec in sorted(TABLE, key=lambda spec: spec.env):
            value = spec.mask(getattr(self, spec.field))
            out[spec.env] = list(map(str, value)) if isinstance(value, tuple) else value
        return out

    def env_lines(self) -> list[str]:
        """`NAME=value` lines (EnvironmentFile syntax), sorted, masked as in masked_env:
        what `check-config` prints. Unmasked values read back to the same settings."""
        return [f"{name}={env_text(value)}" for name, value in self.masked_env().items()]


TABLE: tuple[Spec, ...] = tuple(
    dataclasses.replace(f.metadata[_SPEC], field=f.name, default=f.default)
    for f in dataclasses.fields(Settings)
    if _SPEC in f.metadata
)


def _variable(problem: str) -> str:
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


def is_loopback(host: str | None) -> bool:
    """127.0.0.0/8, ::1 or localhost."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


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


def _host_port(netloc: str) -> str:
    return netloc.rpartition("@")[2]


def mask_url_path(url: str) -> str:
    """scheme://host[:port], then /*** if anything followed (a path, query, fragment or
    user part: providers put keys in any of them)."""
    parsed = urlsplit(url)
    base = f"{parsed.scheme}://{_host_port(parsed.netloc)}"
    hidden = "@" in parsed.netloc or parsed.path.strip("/") or parsed.query or parsed.fragment
    return base + "/" + MASK if hidden else base


def mask_redis_password(url: str) -> str:
    """The Redis URL with its password (user part or `?password=`) replaced by ***."""
    parsed = urlsplit(url)
    netloc = parsed.netloc
    if parsed.password is not None:
        user = netloc.rpartition("@")[0].partition(":")[0]
        netloc = f"{user}:{MASK}@{_host_port(netloc)}"
    query = "&".join(
        f"password={MASK}" if part.partition("=")[0].lower() == "password" else part
        for part in parsed.query.split("&")
    )
    # By hand: urlunsplit drops the empty host of unix:///path.
    return f"{parsed.scheme}://{netloc}{parsed.path}" + (f"?{query}" if query else "")


def redis_has_credentials(url: str) -> bool:
    """A password or ACL user in the user part or the query."""
    parsed = urlsplit(url)
    query_names = {part.partition("=")[0].lower() for part in parsed.query.split("&")}
    return bool(parsed.username or parsed.password) or bool({"password", "username"} & query_names)


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
