"""Settings: one frozen object built from the environment, validated all at once."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from walletd.observability.webhooks import webhook_key

T = TypeVar("T")

ENVIRONMENTS = ("development", "production", "test")
LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
KEYSTORES = ("file", "redis")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ConfigError(Exception):
    """The environment does not describe a runnable walletd; lists every problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of SPEC §6 that this build uses; defaults are the SPEC's."""

    env: str = "development"
    debug: bool = False
    host: str = "0.0.0.0"
    port: int = 8080
    log_level: str = "INFO"
    log_format: str = "json"
    # Stream protocol (SPEC §1, §5)
    sse_retry_ms: int = 3000
    sse_batch_size: int = 100
    sse_progress_throttle_s: float = 0.5
    sse_keepalive_interval_s: float = 15.0
    sse_max_stream_duration_s: float = 600.0
    max_wallet_trades: int = 20000
    shutdown_grace_s: float = 10.0
    # Upstream and demo source (SPEC §4)
    helius_key: str | None = field(default=None, repr=False)
    helius_rpc_url: str = "https://mainnet.helius-rpc.com"
    helius_api_url: str = "https://api.helius.xyz"
    helius_rps: float = 10.0
    helius_concurrency: int = 4
    helius_timeout_s: float = 30.0
    helius_max_retries: int = 3
    helius_retry_deadline_s: float = 20.0
    demo_latency_ms: int = 0
    cache_ttl_s: float = 60.0
    cache_max_trades: int = 200_000
    # Overload (SPEC §5)
    max_streams: int = 10_000
    history_memory_mb: int = 256
    # Keys and limits (SPEC §3)
    secret_key: str | None = field(default=None, repr=False)
    api_key_required: bool = False  # from_env: true unless ENV=development
    api_keys_file: str = "api_keys.json"
    keystore: str = "file"
    redis_url: str | None = field(default=None, repr=False)
    redis_prefix: str = "walletd:"
    rate_limit_requests: int = 50
    rate_limit_window_s: float = 60.0
    rate_limit_streaming_connections: int = 10
    auth_failure_limit: int = 20  # failed authentications per client address per window
    stream_lease_ttl_s: float = 30.0
    trusted_proxies: tuple[IPNetwork, ...] = ()
    # Observability (SPEC §5, §7)
    metrics_port: int | None = None
    stale_stream_timeout_s: float = 300.0
    system_metrics_interval_s: float = 15.0
    error_rate_window_s: float = 300.0
    alert_error_rate: float = 10.0  # percent of finished streams
    alert_webhook_url: str | None = field(default=None, repr=False)
    sentry_dsn: str | None = field(default=None, repr=False)
    # HTTP surface (SPEC §6)
    allowed_origins: tuple[str, ...] = ()  # from_env: "*" in development
    # Feature flags (SPEC §6): these are the environment's; FEATURES_FILE overrides them
    # and is re-read on SIGHUP (walletd/features.py).
    feature_progress_events: bool = True
    feature_demo_page: bool = False  # from_env: on in development
    features_file: str | None = None

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `env` (default: the process environment).

        Raises ConfigError naming every invalid variable, never just the first.
        """
        reader = EnvReader(os.environ if env is None else env)
        base = cls()  # the defaults are the dataclass's, written once
        environment = reader.choice("ENV", base.env, ENVIRONMENTS)
        settings = cls(
            env=environment,
            debug=reader.flag("DEBUG", base.debug),
            host=reader.text("HOST", base.host),
            port=reader.integer("PORT", base.port, lo=0, hi=65535),
            log_level=reader.choice("LOG_LEVEL", base.log_level, LOG_LEVELS, upper=True),
            log_format=reader.choice("LOG_FORMAT", base.log_format, LOG_FORMATS),
            sse_retry_ms=reader.integer("SSE_RETRY_MS", base.sse_retry_ms, lo=0, hi=3_600_000),
            sse_batch_size=reader.integer("SSE_BATCH_SIZE", base.sse_batch_size, lo=1, hi=1000),
            sse_progress_throttle_s=reader.number(
                "SSE_PROGRESS_THROTTLE", base.sse_progress_throttle_s, lo=0, hi=60
            ),
            sse_keepalive_interval_s=reader.number(
                "SSE_KEEPALIVE_INTERVAL", base.sse_keepalive_interval_s, lo=0.01, hi=3600
            ),
            sse_max_stream_duration_s=reader.number(
                "SSE_MAX_STREAM_DURATION", base.sse_max_stream_duration_s, lo=0.01, hi=86_400
            ),
            max_wallet_trades=reader.integer(
                "MAX_WALLET_TRADES", base.max_wallet_trades, lo=1, hi=10_000_000
            ),
            shutdown_grace_s=reader.number("SHUTDOWN_GRACE", base.shutdown_grace_s, lo=0, hi=3600),
            helius_key=reader.optional_text("HELIUS_KEY"),
            helius_rpc_url=reader.url("HELIUS_RPC_URL", base.helius_rpc_url),
            helius_api_url=reader.url("HELIUS_API_URL", base.helius_api_url),
            helius_rps=reader.number("HELIUS_RPS", base.helius_rps, lo=0.01, hi=10_000),
            helius_concurrency=reader.integer(
                "HELIUS_CONCURRENCY", base.helius_concurrency, lo=1, hi=256
            ),
            helius_timeout_s=reader.number("HELIUS_TIMEOUT", base.helius_timeout_s, lo=0.1, hi=600),
            helius_max_retries=reader.integer(
                "HELIUS_MAX_RETRIES", base.helius_max_retries, lo=0, hi=20
            ),
            helius_retry_deadline_s=reader.number(
                "HELIUS_RETRY_DEADLINE", base.helius_retry_deadline_s, lo=0, hi=3600
            ),
            demo_latency_ms=reader.integer(
                "DEMO_LATENCY_MS", base.demo_latency_ms, lo=0, hi=3_600_000
            ),
            cache_ttl_s=reader.number("CACHE_TTL", base.cache_ttl_s, lo=0, hi=86_400),
            cache_max_trades=reader.integer(
                "CACHE_MAX_TRADES", base.cache_max_trades, lo=0, hi=100_000_000
            ),
            max_streams=reader.integer("MAX_STREAMS", base.max_streams, lo=1, hi=1_000_000),
            history_memory_mb=reader.integer(
                "HISTORY_MEMORY_MB", base.history_memory_mb, lo=1, hi=1_000_000
            ),
            secret_key=reader.optional_text("SECRET_KEY", echo=False),
            api_key_required=reader.flag("API_KEY_REQUIRED", environment != "development"),
            api_keys_file=reader.text("API_KEYS_FILE", base.api_keys_file),
            keystore=reader.choice("KEYSTORE", base.keystore, KEYSTORES),
            redis_url=reader.redis_url("REDIS_URL"),
            redis_prefix=reader.text("REDIS_PREFIX", base.redis_prefix),
            rate_limit_requests=reader.integer(
                "RATE_LIMIT_REQUESTS", base.rate_limit_requests, lo=1, hi=1_000_000
            ),
            rate_limit_window_s=reader.number(
                "RATE_LIMIT_WINDOW", base.rate_limit_window_s, lo=0.001, hi=86_400
            ),
            rate_limit_streaming_connections=reader.integer(
                "RATE_LIMIT_STREAMING_CONNECTIONS",
                base.rate_limit_streaming_connections,
                lo=1,
                hi=100_000,
            ),
            auth_failure_limit=reader.integer(
                "AUTH_FAILURE_LIMIT", base.auth_failure_limit, lo=1, hi=1_000_000
            ),
            stream_lease_ttl_s=reader.number(
                "STREAM_LEASE_TTL", base.stream_lease_ttl_s, lo=0.1, hi=3600
            ),
            trusted_proxies=reader.networks("TRUSTED_PROXIES"),
            metrics_port=reader.optional_integer("METRICS_PORT", lo=1, hi=65535),
            stale_stream_timeout_s=reader.number(
                "STALE_STREAM_TIMEOUT", base.stale_stream_timeout_s, lo=0.1, hi=86_400
            ),
            system_metrics_interval_s=reader.number(
                "SYSTEM_METRICS_INTERVAL", base.system_metrics_interval_s, lo=0.1, hi=3600
            ),
            error_rate_window_s=reader.number(
                "ERROR_RATE_WINDOW", base.error_rate_window_s, lo=1, hi=86_400
            ),
            alert_error_rate=reader.number("ALERT_ERROR_RATE", base.alert_error_rate, lo=0, hi=100),
            alert_webhook_url=reader.optional_url("ALERT_WEBHOOK_URL"),
            sentry_dsn=reader.optional_url("SENTRY_DSN", credentials=True),
            allowed_origins=reader.origins(
                "ALLOWED_ORIGINS", ("*",) if environment == "development" else ()
            ),
            feature_progress_events=reader.flag(
                "FEATURE_PROGRESS_EVENTS", base.feature_progress_events
            ),
            feature_demo_page=reader.flag("FEATURE_DEMO_PAGE", environment == "development"),
            features_file=reader.optional_text("FEATURES_FILE"),
        )
        for problem in settings._inconsistencies():
            reader.problems.append(problem)
        reader.raise_if_problems()
        return settings

    def warnings(self) -> list[str]:
        """Allowed but worth a line in the log at startup."""
        out = []
        if self.is_production and not self.redis_url:
            out.append(
                "REDIS_URL is not set: rate limits, stream caps and the history cache are "
                "per process"
            )
        if self.redis_url and not self.secret_key:
            out.append(
                "REDIS_URL without SECRET_KEY: finished histories are not shared through "
                "Redis (entries are signed with a key derived from SECRET_KEY)"
            )
        return out

    def _production_problems(self) -> list[str]:
        """SPEC §6: what ENV=production refuses to start without."""
        problems = []
        if len(self.secret_key or "") < 32:
            problems.append("SECRET_KEY: production needs 32 or more characters")
        if not self.api_key_required:
            problems.append("API_KEY_REQUIRED: production needs true")
        if not self.allowed_origins:
            problems.append("ALLOWED_ORIGINS: production needs at least one https origin")
        for origin in self.allowed_origins:
            if origin == "*" or not origin.startswith("https://"):
                problems.append(
                    f"ALLOWED_ORIGINS: production allows https origins only, not {origin!r}"
                )
        if not self.helius_key:
            problems.append("HELIUS_KEY: production needs it (the demo source is for development)")
        if self.debug:
            problems.append("DEBUG: must be off in production")
        if self.sentry_dsn and not self.sentry_dsn.startswith("https://"):
            problems.append("SENTRY_DSN: production needs an https DSN")
        return problems

    def _inconsistencies(self) -> list[str]:
        """Problems of combinations, each naming its variables."""
        problems = self._production_problems() if self.is_production else []
        if self.api_key_required and not self.secret_key and not self.is_production:
            problems.append("SECRET_KEY: required when API_KEY_REQUIRED=true (keys are HMACs)")
        if self.keystore == "redis" and not self.redis_url:
            problems.append("KEYSTORE=redis: needs REDIS_URL")
        if not self.redis_prefix.strip(":"):
            problems.append("REDIS_PREFIX: must not be empty")
        if self.alert_webhook_url and not self.secret_key:
            problems.append("ALERT_WEBHOOK_URL: needs SECRET_KEY (alerts are signed with it)")
        elif self.alert_webhook_url and self.secret_key:
            try:
                webhook_key(self.secret_key)
            except ValueError as exc:
                problems.append(f"SECRET_KEY: {exc}")
        return problems

    def masked(self) -> dict[str, Any]:
        """The settings as a dict with every secret masked, for printing and logs."""
        out = dataclasses.asdict(self)
        for f in dataclasses.fields(self):
            if not f.repr and out[f.name] is not None:
                out[f.name] = "***"
        if self.redis_url is not None:
            out["redis_url"] = _without_password(self.redis_url)
        out["trusted_proxies"] = [str(net) for net in self.trusted_proxies]
        return out


def _without_password(url: str) -> str:
    """The URL with any password replaced by ***: where Redis is, not how to get in."""
    parsed = urlsplit(url)
    if parsed.password is None:
        return url
    netloc = f"{parsed.username or ''}:***@{parsed.hostname}"
    if parsed.port is not None:
        netloc += f":{parsed.port}"
    return parsed._replace(netloc=netloc).geturl()


class EnvReader:
    """Typed access to an environment mapping that records problems instead of raising."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self.problems: list[str] = []

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

    def text(self, name: str, default: str) -> str:
        return self._get(name, default, lambda raw: raw)

    def optional_text(self, name: str, *, echo: bool = True) -> str | None:
        return self._get(name, None, lambda raw: raw, echo=echo)

    def redis_url(self, name: str) -> str | None:
        """A redis://, rediss:// or unix:// URL; it may carry a password, so never echoed."""

        def convert(raw: str) -> str:
            parsed = urlsplit(raw)
            if parsed.scheme not in ("redis", "rediss", "unix"):
                raise ValueError("expected a redis://, rediss:// or unix:// URL")
            if parsed.scheme != "unix" and not parsed.hostname:
                raise ValueError("expected a host")
            return raw

        return self._get(name, None, convert, echo=False)

    def networks(self, name: str) -> tuple[IPNetwork, ...]:
        """A comma-separated list of addresses or CIDR networks."""

        def convert(raw: str) -> tuple[IPNetwork, ...]:
            out = []
            for item in filter(None, (part.strip() for part in raw.split(","))):
                try:
                    out.append(ipaddress.ip_network(item, strict=False))
                except ValueError:
                    raise ValueError(f"{item!r} is not an IP address or network") from None
            return tuple(out)

        return self._get(name, (), convert)

    def url(self, name: str, default: str) -> str:
        """A base URL: no query, fragment or credentials (a key belongs in its own variable)."""

        def convert(raw: str) -> str:
            parsed = urlsplit(raw)
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise ValueError("expected an http(s) URL")
            if parsed.query or parsed.fragment or parsed.username or parsed.password:
                raise ValueError("expected a base URL without query, fragment or credentials")
            return raw.rstrip("/")

        return self._get(name, default, convert, echo=False)

    def optional_url(self, name: str, *, credentials: bool = False) -> str | None:
        """An http(s) URL that may carry a token (query, or user part when `credentials`,
        as a Sentry DSN does); never echoed."""

        def convert(raw: str) -> str:
            parsed = urlsplit(raw)
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise ValueError("expected an http(s) URL")
            if (parsed.username or parsed.password) and not credentials:
                raise ValueError("expected a URL without credentials")
            return raw

        return self._get(name, None, convert, echo=False)

    def origins(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """Comma-separated origins (scheme://host[:port], nothing after), or "*"."""

        def convert(raw: str) -> tuple[str, ...]:
            out = []
            for item in filter(None, (part.strip() for part in raw.split(","))):
                if item == "*":
                    out.append(item)
                    continue
                parsed = urlsplit(item)
                if parsed.scheme not in ("http", "https") or not parsed.hostname:
                    raise ValueError(f"{item!r} is not an origin (scheme://host[:port])")
                if parsed.path or parsed.query or parsed.fragment or parsed.username:
                    raise ValueError(f"{item!r} is not an origin: nothing after host[:port]")
                out.append(item)
            return tuple(out)

        return self._get(name, default, convert)

    def optional_integer(self, name: str, *, lo: int, hi: int) -> int | None:
        return self._get(name, None, _bounded_integer(lo, hi))

    def choice(
        self, name: str, default: str, options: tuple[str, ...], *, upper: bool = False
    ) -> str:
        def convert(raw: str) -> str:
            value = raw.upper() if upper else raw.lower()
            if value not in options:
                raise ValueError(f"expected one of {', '.join(options)}")
            return value

        return self._get(name, default, convert)

    def flag(self, name: str, default: bool) -> bool:
        def convert(raw: str) -> bool:
            if raw.lower() in _TRUE:
                return True
            if raw.lower() in _FALSE:
                return False
            raise ValueError("expected true or false")

        return self._get(name, default, convert)

    def integer(self, name: str, default: int, *, lo: int, hi: int) -> int:
        return self._get(name, default, _bounded_integer(lo, hi))

    def number(self, name: str, default: float, *, lo: float, hi: float) -> float:
        def convert(raw: str) -> float:
            try:
                value = float(raw)
            except ValueError:
                raise ValueError("expected a number") from None
            if not lo <= value <= hi:  # also rejects nan
                raise ValueError(f"expected {lo:g}..{hi:g}")
            return value

        return self._get(name, default, convert)

    def raise_if_problems(self) -> None:
        if self.problems:
            raise ConfigError(self.problems)


def _bounded_integer(lo: int, hi: int) -> Callable[[str], int]:
    def convert(raw: str) -> int:
        try:
            value = int(raw, 10)
        except ValueError:
            raise ValueError("expected an integer") from None
        if not lo <= value <= hi:
            raise ValueError(f"expected {lo}..{hi}")
        return value

    return convert
