"""Settings: one frozen object built from the environment, validated all at once.

Each field is one row of the setting table (`setting(ENV_NAME, default, kind, ...)`):
names, defaults, bounds and secrecy are written once, and from_env, check-config and
the documentation tests all read them from there.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from walletd.env import (
    MIN_SECRET_DISTINCT,
    MIN_SECRET_LENGTH,
    SPEC_KEY,
    EnvReader,
    IPNetwork,
    Spec,
    env_text,
    is_repetitive,
    setting,
    variable_of,
    webhook_secret_key,
)
from walletd.urls import is_loopback, redis_has_credentials

ENVIRONMENTS = ("development", "production", "test")
LOG_FORMATS = ("json", "text")
EVENT_LOOPS = ("uvloop", "asyncio")
# uvloop is a dependency on Linux only (setup.cfg); elsewhere the stdlib loop is the default.
DEFAULT_EVENT_LOOP = "uvloop" if sys.platform == "linux" else "asyncio"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
KEYSTORES = ("file", "redis")
UPSTREAMS = ("helius", "rpc", "demo")
RPC_HISTORY_METHODS = ("auto", "gtfa", "signatures")


def _is_development(values: Mapping[str, Any]) -> bool:
    return bool(values["env"] == "development")


def _default_upstream(values: Mapping[str, Any]) -> str:
    if values["helius_key"]:
        return "helius"
    return "rpc" if values["rpc_url"] else "demo"


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
    # 0: demo wallets never trade live (their histories stay as generated).
    demo_live_interval_s: float = setting("DEMO_LIVE_INTERVAL", 10.0, "float", lo=0, hi=86_400)
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
    keystore_stale_max_s: float = setting("KEYSTORE_STALE_MAX", 300.0, "float", lo=0, hi=86_400)
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
        named = {variable_of(problem) for problem in reader.problems}
        # A variable that failed to parse is reported once: the rules below saw its default.
        reader.problems += [p for p in settings._inconsistencies() if variable_of(p) not in named]
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
        if self.redis_url and not self.secret_key:
            out.append(
                "REDIS_URL without SECRET_KEY: finished histories are not shared through "
                "Redis (entries are signed with a key derived from SECRET_KEY)"
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
        if 0 < self.demo_live_interval_s < 0.1:
            problems.append("DEMO_LIVE_INTERVAL: 0 (no live trades) or at least 0.1")
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
    dataclasses.replace(f.metadata[SPEC_KEY], field=f.name, default=f.default)
    for f in dataclasses.fields(Settings)
    if SPEC_KEY in f.metadata
)
