"""Settings.from_env: SPEC defaults, typed parsing, every problem listed at once."""

from __future__ import annotations

import base64
import dataclasses
import re
from pathlib import Path

import pytest

from walletd.config import TABLE, Settings
from walletd.env import ConfigError, env_text, is_repetitive


def test_defaults_are_the_specs():
    s = Settings.from_env({})
    assert (s.port, s.sse_retry_ms, s.sse_batch_size) == (8080, 3000, 100)
    assert (s.sse_progress_throttle_s, s.sse_keepalive_interval_s) == (0.5, 15.0)
    assert (s.sse_max_stream_duration_s, s.max_wallet_trades) == (600.0, 20000)
    assert (s.shutdown_grace_s, s.cache_ttl_s, s.demo_latency_ms) == (10.0, 60.0, 0)
    assert s.env == "development" and s.feature_progress_events and not s.debug


def test_values_are_parsed_by_type():
    s = Settings.from_env(
        {
            "PORT": "9000",
            "SSE_KEEPALIVE_INTERVAL": "2.5",
            "DEBUG": "yes",
            "LOG_LEVEL": "debug",
            "FEATURE_PROGRESS_EVENTS": "off",
            "ENV": "Test",
            "HOST": " 127.0.0.1 ",
            "SECRET_KEY": "s" * 32,
        }
    )
    assert s.port == 9000 and s.sse_keepalive_interval_s == 2.5 and s.debug
    assert s.log_level == "DEBUG" and not s.feature_progress_events
    assert s.env == "test" and not s.is_production and s.host == "127.0.0.1"


def test_every_problem_is_listed_at_once():
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(
            {
                "PORT": "http",
                "SSE_BATCH_SIZE": "0",
                "DEBUG": "maybe",
                "LOG_FORMAT": "xml",
                "SSE_KEEPALIVE_INTERVAL": "nan",
                "MAX_WALLET_TRADES": "-5",
            }
        )
    problems = caught.value.problems
    names = [p.split("=")[0] for p in problems]
    assert names == [
        "DEBUG",
        "PORT",
        "LOG_FORMAT",
        "SSE_BATCH_SIZE",
        "SSE_KEEPALIVE_INTERVAL",
        "MAX_WALLET_TRADES",
    ]
    assert "expected an integer" in problems[1]
    assert all(name in str(caught.value) for name in names)


def test_empty_values_mean_default():
    assert Settings.from_env({"PORT": "", "DEBUG": "  "}).port == 8080


def test_settings_are_immutable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings.from_env({}).port = 1  # type: ignore[misc]


def test_masked_env_hides_secrets_and_repr_never_shows_them():
    s = Settings.from_env({"HELIUS_KEY": "helius-secret-value"})
    assert s.masked_env()["HELIUS_KEY"] == "***"
    assert "HELIUS_KEY=***" in s.env_lines()
    assert "helius-secret-value" not in repr(s)
    assert Settings.from_env({}).masked_env()["HELIUS_KEY"] is None
    assert "HELIUS_KEY=" in Settings.from_env({}).env_lines()


def test_upstream_settings_default_to_the_spec_and_validate_urls():
    s = Settings.from_env({})
    assert (s.upstream_rps, s.upstream_timeout_s, s.upstream_max_retries) == (10.0, 30.0, 3)
    assert (s.upstream_concurrency, s.upstream_retry_deadline_s) == (4, 20.0)
    s = Settings.from_env({"HELIUS_RPC_URL": "http://127.0.0.1:9000/", "UPSTREAM_RPS": "50"})
    assert s.helius_rpc_url == "http://127.0.0.1:9000" and s.upstream_rps == 50
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(
            {
                "HELIUS_RPC_URL": "ftp://x",
                "HELIUS_API_URL": "https://h/?api-key=secret",
                "UPSTREAM_RPS": "0",
            }
        )
    assert [p.split("=")[0] for p in caught.value.problems] == [
        "HELIUS_RPC_URL",
        "HELIUS_API_URL",
        "UPSTREAM_RPS",
    ]
    assert "secret" not in str(caught.value)  # a URL may carry a key: never echoed


def test_keys_are_required_outside_development_and_need_a_secret():
    assert not Settings.from_env({}).api_key_required
    assert Settings.from_env({"ENV": "test", "SECRET_KEY": "k"}).api_key_required
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"API_KEY_REQUIRED": "true", "KEYSTORE": "redis"})
    problems = "\n".join(caught.value.problems)
    assert "SECRET_KEY" in problems and "KEYSTORE=redis" in problems


def test_drain_delay_must_leave_streams_part_of_the_grace():
    assert Settings.from_env({}).drain_delay_s == 0.0
    assert Settings.from_env({"DRAIN_DELAY": "5"}).drain_delay_s == 5.0
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"DRAIN_DELAY": "10", "SHUTDOWN_GRACE": "10"})
    assert [p.split(":")[0] for p in caught.value.problems] == ["DRAIN_DELAY"]


def test_limits_and_redis_settings():
    s = Settings.from_env(
        {
            "RATE_LIMIT_REQUESTS": "5",
            "RATE_LIMIT_WINDOW": "2.5",
            "RATE_LIMIT_STREAMING_CONNECTIONS": "3",
            "STREAM_LEASE_TTL": "9",
            "TRUSTED_PROXIES": "10.0.0.0/8, ::1",
            "REDIS_URL": "redis://user:hunter2@cache.internal:6380/2",
        }
    )
    assert (s.rate_limit_requests, s.rate_limit_window_s) == (5, 2.5)
    assert (s.rate_limit_streaming_connections, s.stream_lease_ttl_s) == (3, 9.0)
    assert [str(n) for n in s.trusted_proxies] == ["10.0.0.0/8", "::1/128"]
    masked = s.masked_env()
    assert masked["REDIS_URL"] == "redis://user:***@cache.internal:6380/2"
    assert masked["TRUSTED_PROXIES"] == ["10.0.0.0/8", "::1/128"]
    assert "hunter2" not in repr(s) and "hunter2" not in str(masked)


def test_bad_redis_url_and_proxies_are_reported_without_echoing_the_url():
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"REDIS_URL": "http://:hunter2@x", "TRUSTED_PROXIES": "10.0.0.0/8,nope"})
    problems = "\n".join(caught.value.problems)
    assert "REDIS_URL" in problems and "hunter2" not in problems
    assert "'nope' is not an IP address" in problems


# A production environment that SPEC §6 accepts; each rule below breaks one thing.
PRODUCTION = {
    "ENV": "production",
    "SECRET_KEY": "pQ7vX2kR9mT4wZ8nB3cF6hJ1yL5sD0gA",
    "API_KEY_REQUIRED": "true",
    "ALLOWED_ORIGINS": "https://app.example.com, https://admin.example.com:8443",
    "HELIUS_KEY": "helius-key",
    "REDIS_URL": "redis://:redis-password@127.0.0.1:6379/0",
}
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
RULES = {
    "short secret": ({"SECRET_KEY": "p" * 31}, "SECRET_KEY"),
    "no secret": ({"SECRET_KEY": ""}, "SECRET_KEY"),
    "keys not required": ({"API_KEY_REQUIRED": "false"}, "API_KEY_REQUIRED"),
    "no origins": ({"ALLOWED_ORIGINS": ""}, "ALLOWED_ORIGINS"),
    "wildcard origin": ({"ALLOWED_ORIGINS": "*"}, "ALLOWED_ORIGINS"),
    "http origin": ({"ALLOWED_ORIGINS": "http://app.example.com"}, "ALLOWED_ORIGINS"),
    "wildcard subdomain origin": (
        {"ALLOWED_ORIGINS": "https://app.example.com,https://*.example.com"},
        "ALLOWED_ORIGINS",
    ),
    "origin with a path": ({"ALLOWED_ORIGINS": "https://app.example.com/app"}, "ALLOWED_ORIGINS"),
    "repeated secret": ({"SECRET_KEY": "a" * 32}, "SECRET_KEY"),
    "alternating secret": ({"SECRET_KEY": "ab" * 16}, "SECRET_KEY"),
    "repeated block secret": ({"SECRET_KEY": "abcdefgh" * 4}, "SECRET_KEY"),
    "seven distinct characters": ({"SECRET_KEY": "cbdfaageaceaebaaddabaedageabffea"}, "SECRET_KEY"),
    "no upstream (demo)": ({"HELIUS_KEY": ""}, "UPSTREAM"),
    "demo chosen": ({"UPSTREAM": "demo"}, "UPSTREAM"),
    "helius without its key": ({"UPSTREAM": "helius", "HELIUS_KEY": ""}, "HELIUS_KEY"),
    "rpc without its url": ({"UPSTREAM": "rpc"}, "RPC_URL"),
    "http helius rpc": ({"HELIUS_RPC_URL": "http://helius.example.com"}, "HELIUS_RPC_URL"),
    "http helius api": ({"HELIUS_API_URL": "http://10.0.0.5:8080"}, "HELIUS_API_URL"),
    "http rpc": ({"UPSTREAM": "rpc", "RPC_URL": "http://rpc.example.com/k3y"}, "RPC_URL"),
    "webhook without secret": (
        {"ALERT_WEBHOOK_URL": "https://hooks.example.com/w"},
        "ALERT_WEBHOOK_SECRET",
    ),
    "http webhook": (
        {"ALERT_WEBHOOK_URL": "http://hooks.example.com/w", "ALERT_WEBHOOK_SECRET": WEBHOOK_SECRET},
        "ALERT_WEBHOOK_URL",
    ),
    "plain webhook secret": (
        {"ALERT_WEBHOOK_URL": "https://h.example.com", "ALERT_WEBHOOK_SECRET": "plain-secret"},
        "ALERT_WEBHOOK_SECRET",
    ),
    "debug on": ({"DEBUG": "true"}, "DEBUG"),
    "http sentry": ({"SENTRY_DSN": "http://key@sentry.example.com/1"}, "SENTRY_DSN"),
}


def test_a_production_environment_that_follows_the_rules_starts():
    s = Settings.from_env(PRODUCTION)
    assert s.is_production and s.api_key_required and not s.feature_demo_page
    assert s.allowed_origins == ("https://app.example.com", "https://admin.example.com:8443")
    assert s.warnings() == []


@pytest.mark.parametrize("rule", sorted(RULES))
def test_each_production_rule_alone_refuses_to_start(rule):
    change, variable = RULES[rule]
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**PRODUCTION, **change})
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(variable)
    for secret in ("helius-key", "p" * 31, "redis-password", "k3y", "plain-secret"):
        assert secret not in str(caught.value)


def test_every_production_problem_is_listed_together():
    broken = {"ENV": "production", "DEBUG": "1", "SENTRY_DSN": "http://k@sentry.example.com/1"}
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(broken)
    named = {problem.split(":")[0].split("=")[0] for problem in caught.value.problems}
    assert {"SECRET_KEY", "ALLOWED_ORIGINS", "UPSTREAM", "DEBUG", "SENTRY_DSN"} <= named


def test_production_without_redis_warns():
    s = Settings.from_env({k: v for k, v in PRODUCTION.items() if k != "REDIS_URL"})
    assert any("REDIS_URL" in warning for warning in s.warnings())


def test_development_defaults_suit_a_local_front_end():
    s = Settings.from_env({})
    assert s.allowed_origins == ("*",) and s.feature_demo_page and not s.api_key_required


def test_origins_are_origins():
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"ALLOWED_ORIGINS": "https://app.example.com/path,ftp://x"})
    assert "not an origin" in caught.value.problems[0]


def test_a_production_rule_names_why_a_wildcard_origin_is_refused():
    env = {**PRODUCTION, "ALLOWED_ORIGINS": "https://app.example.com,https://*.example.com"}
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    [problem] = caught.value.problems
    assert "https://*.example.com" in problem and "exact origins only" in problem
    with pytest.raises(ConfigError):  # silently matching nothing is no better in development
        Settings.from_env({"ALLOWED_ORIGINS": "https://*.example.com"})


@pytest.mark.parametrize(
    "host", ["http://127.0.0.1:8899", "http://localhost:8899", "http://[::1]:8899"]
)
def test_production_allows_plain_http_upstreams_on_loopback_only(host):
    env = {**PRODUCTION, "UPSTREAM": "rpc", "RPC_URL": host + "/", "HELIUS_RPC_URL": host}
    s = Settings.from_env(env)
    assert s.upstream == "rpc" and s.helius_rpc_url == host


def test_production_accepts_a_signed_https_webhook():
    env = {
        **PRODUCTION,
        "ALERT_WEBHOOK_URL": "https://hooks.example.com/w?token=t0k",
        "ALERT_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    s = Settings.from_env(env)
    assert s.alert_webhook_key is not None and len(s.alert_webhook_key) == 24


@pytest.mark.parametrize(
    ("secret", "repetitive"),
    [
        ("a" * 32, True),
        ("ab" * 16, True),
        ("abcdefgh" * 4, True),  # 8 distinct characters, one block repeated
        ("abcdefghi" * 3 + "abcde", True),  # period 9, not a divisor of 32
        ("cbdfaageaceaebaaddabaedageabffea", True),  # 7 distinct characters, no period
        ("pQ7vX2kR9mT4wZ8nB3cF6hJ1yL5sD0gA", False),
        ("abcdefgh" * 4 + "i", False),  # the block breaks off: no period
    ],
)
def test_the_repetitive_secret_rule(secret, repetitive):
    assert is_repetitive(secret) is repetitive


def test_the_dataclass_defaults_are_those_of_an_empty_environment():
    assert Settings() == Settings.from_env({})
    for spec in TABLE:  # derived defaults too, evaluated on the other defaults
        if spec.derive is not None:
            assert spec.derive(dataclasses.asdict(Settings())) == spec.default, spec.env


def test_every_field_is_one_row_of_the_table_with_its_own_name():
    names = [spec.env for spec in TABLE]
    aliases = [alias for spec in TABLE for alias in spec.aliases]
    assert len(set(names + aliases)) == len(names) + len(aliases)
    fields = {f.name for f in dataclasses.fields(Settings)} - {"notices"}
    assert {spec.field for spec in TABLE} == fields
    for spec in TABLE:
        assert spec.env == spec.env.upper() and " " not in spec.env
        if spec.kind in ("int", "float"):
            assert spec.lo is not None and spec.hi is not None, spec.env
            assert spec.default is None or spec.lo <= spec.default <= spec.hi, spec.env


NUMBERS = [spec for spec in TABLE if spec.kind in ("int", "float")]


@pytest.mark.parametrize("spec", NUMBERS, ids=[spec.env for spec in NUMBERS])
def test_every_number_is_bounded(spec):
    step = 1 if spec.kind == "int" else 0.001
    # DRAIN_DELAY must also stay below SHUTDOWN_GRACE: give it the whole range.
    room = {"SHUTDOWN_GRACE": "3600"} if spec.env == "DRAIN_DELAY" else {}
    for edge in (spec.lo, spec.hi - step if room else spec.hi):
        value = int(edge) if spec.kind == "int" else edge
        env = {spec.env: str(value), **room}
        assert getattr(Settings.from_env(env), spec.field) == value
    for outside in (spec.lo - step, spec.hi + step):
        text = str(int(outside)) if spec.kind == "int" else str(outside)
        with pytest.raises(ConfigError) as caught:
            Settings.from_env({spec.env: text})
        [problem] = caught.value.problems
        assert problem.startswith(f"{spec.env}=")


def test_the_new_settings_have_the_specs_defaults():
    s = Settings()
    assert (s.host, s.upstream, s.rpc_url, s.rpc_history_method) == (
        "127.0.0.1",
        "demo",
        None,
        "auto",
    )
    assert (s.max_streams, s.history_memory_mb, s.auth_failure_limit) == (10000, 256, 20)
    assert (s.keystore_stale_max_s, s.follow_poll_interval_s, s.demo_live_interval_s) == (
        300.0,
        2.0,
        10.0,
    )


def test_the_upstream_follows_the_keys_given_unless_named():
    assert Settings.from_env({}).upstream == "demo"
    assert Settings.from_env({"RPC_URL": "https://rpc.example.com/k"}).upstream == "rpc"
    both = {"HELIUS_KEY": "h", "RPC_URL": "https://rpc.example.com/k"}
    assert Settings.from_env(both).upstream == "helius"
    assert Settings.from_env({**both, "UPSTREAM": "RPC"}).upstream == "rpc"
    assert Settings.from_env({**both, "UPSTREAM": "demo"}).upstream == "demo"
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"UPSTREAM": "solana", "RPC_HISTORY_METHOD": "fast"})
    assert [_name(p) for p in caught.value.problems] == ["UPSTREAM", "RPC_HISTORY_METHOD"]
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"UPSTREAM": "helius"})  # in development too: it could not start
    assert [_name(p) for p in caught.value.problems] == ["HELIUS_KEY"]


def test_rpc_url_may_carry_a_key_but_is_never_shown_or_echoed():
    url = "https://user:pw@solana-mainnet.example.com/v2/rpc-key-123?api-key=rpc-key-456"
    s = Settings.from_env({"RPC_URL": url, "RPC_HISTORY_METHOD": "signatures"})
    assert s.rpc_url == url and s.rpc_history_method == "signatures"
    assert s.masked_env()["RPC_URL"] == "https://solana-mainnet.example.com/***"
    shown = "\n".join(s.env_lines()) + repr(s) + str(s.masked_env())
    assert "rpc-key" not in shown and "pw" not in shown
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"RPC_URL": "wss://x.example.com/rpc-key-123"})
    assert "rpc-key-123" not in str(caught.value)


@pytest.mark.parametrize(
    ("name", "url", "shown"),
    [
        ("RPC_URL", "https://rpc.example.com", "https://rpc.example.com"),
        ("RPC_URL", "https://rpc.example.com:8443/?k=s3cr3t", "https://rpc.example.com:8443/***"),
        ("ALERT_WEBHOOK_URL", "https://hooks.example.com/s3cr3t", "https://hooks.example.com/***"),
        ("SENTRY_DSN", "https://s3cr3t@o1.ingest.sentry.io/42", "https://o1.ingest.sentry.io/***"),
        ("REDIS_URL", "redis://:s3cr3t@cache:6379/0", "redis://:***@cache:6379/0"),
        ("REDIS_URL", "rediss://acl:s3cr3t@[::1]:6380", "rediss://acl:***@[::1]:6380"),
        (
            "REDIS_URL",
            "redis://cache:6379/0?username=acl&password=s3cr3t",
            "redis://cache:6379/0?username=acl&password=***",
        ),
        (
            "REDIS_URL",
            "unix:///run/redis.sock?password=s3cr3t",
            "unix:///run/redis.sock?password=***",
        ),
        ("REDIS_URL", "redis://cache:6379/0", "redis://cache:6379/0"),
    ],
)
def test_credentials_inside_urls_are_masked(name, url, shown):
    env = {name: url}
    if name == "ALERT_WEBHOOK_URL":
        env["ALERT_WEBHOOK_SECRET"] = WEBHOOK_SECRET
    s = Settings.from_env(env)
    assert s.masked_env()[name] == shown
    assert f"{name}={shown}" in s.env_lines()
    assert "s3cr3t" not in "\n".join(s.env_lines()) + repr(s)


def test_check_config_output_is_sorted_env_names_with_every_setting():
    s = Settings.from_env({"PORT": "9001", "TRUSTED_PROXIES": "10.0.0.0/8,::1"})
    lines = s.env_lines()
    names = [line.partition("=")[0] for line in lines]
    assert names == sorted(spec.env for spec in TABLE)
    assert "PORT=9001" in lines and "TRUSTED_PROXIES=10.0.0.0/8,::1/128" in lines
    assert "SSE_PROGRESS_THROTTLE=0.5" in lines and "UPSTREAM_RPS=10" in lines
    assert list(s.masked_env()) == names
    assert s.masked_env()["PORT"] == 9001 and s.masked_env()["DEBUG"] is False


def test_check_config_lines_read_back_to_the_same_settings():
    env = {
        "ENV": "test",
        "SECRET_KEY": "k" * 32,
        "HOST": "::1",
        "SSE_PROGRESS_THROTTLE": "0.25",
        "TRUSTED_PROXIES": "10.0.0.0/8",
        "ALLOWED_ORIGINS": "https://a.example.com,http://localhost:3000",
        "METRICS_PORT": "9090",
        "HELIUS_RPS": "7",
    }
    s = Settings.from_env(env)
    printed = dict(line.split("=", 1) for line in s.env_lines())
    printed["SECRET_KEY"] = env["SECRET_KEY"]  # the one masked value
    assert Settings.from_env(printed) == s


def test_deprecated_helius_pacing_names_still_work_with_a_warning():
    old = {
        "HELIUS_RPS": "5",
        "HELIUS_CONCURRENCY": "2",
        "HELIUS_TIMEOUT": "7.5",
        "HELIUS_MAX_RETRIES": "1",
        "HELIUS_RETRY_DEADLINE": "9",
    }
    s = Settings.from_env(old)
    assert (s.upstream_rps, s.upstream_concurrency, s.upstream_timeout_s) == (5.0, 2, 7.5)
    assert (s.upstream_max_retries, s.upstream_retry_deadline_s) == (1, 9.0)
    warned = "\n".join(s.warnings())
    for name in old:
        assert f"{name} is deprecated" in warned
    assert "UPSTREAM_RETRY_DEADLINE" in warned
    assert Settings.from_env({}).warnings() == []


def test_the_new_pacing_name_wins_over_the_old_one():
    s = Settings.from_env({"UPSTREAM_RPS": "20", "HELIUS_RPS": "5"})
    assert s.upstream_rps == 20
    assert s.warnings() == ["HELIUS_RPS is deprecated and ignored: UPSTREAM_RPS is set"]
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"HELIUS_TIMEOUT": "0"})
    assert _name(caught.value.problems[0]) == "HELIUS_TIMEOUT"  # the name the operator wrote


def test_a_webhook_url_needs_a_well_formed_secret_never_echoed():
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"ALERT_WEBHOOK_URL": "http://127.0.0.1:9/hook"})
    assert [_name(p) for p in caught.value.problems] == ["ALERT_WEBHOOK_SECRET"]
    short = "whsec_" + base64.b64encode(b"sixteen-byte-key").decode()
    for bad in ("whsec_not base64!", "plain-old-secret", short):
        with pytest.raises(ConfigError) as caught:
            Settings.from_env({"ALERT_WEBHOOK_SECRET": bad})
        [problem] = caught.value.problems
        assert problem.startswith("ALERT_WEBHOOK_SECRET=...") and bad not in problem
    s = Settings.from_env({"ALERT_WEBHOOK_SECRET": WEBHOOK_SECRET})
    assert s.masked_env()["ALERT_WEBHOOK_SECRET"] == "***" and WEBHOOK_SECRET not in repr(s)


def test_production_warns_about_a_redis_without_credentials():
    open_redis = {**PRODUCTION, "REDIS_URL": "redis://10.0.0.7:6379/0"}
    assert any("no password or ACL user" in w for w in Settings.from_env(open_redis).warnings())
    for url in ("redis://acl:pw@10.0.0.7:6379/0", "rediss://10.0.0.7:6380/0?password=pw"):
        assert Settings.from_env({**PRODUCTION, "REDIS_URL": url}).warnings() == []


def test_a_real_upstream_in_development_on_a_public_address_warns():
    helius = {"HELIUS_KEY": "h"}
    assert Settings.from_env(helius).warnings() == []  # 127.0.0.1 by default
    for host in ("0.0.0.0", "::", "10.1.2.3"):
        [warning] = Settings.from_env({**helius, "HOST": host}).warnings()
        assert warning.startswith(f"HOST={host}:") and "helius" in warning
    [warning] = Settings.from_env({"RPC_URL": "https://r.example.com"}).warnings(host="0.0.0.0")
    assert "rpc" in warning
    assert Settings.from_env({"HOST": "0.0.0.0"}).warnings() == []  # the demo source: harmless
    assert Settings.from_env({**helius, "HOST": "localhost"}).warnings() == []
    test_env = {**helius, "ENV": "test", "SECRET_KEY": "k", "HOST": "0.0.0.0"}
    assert Settings.from_env(test_env).warnings() == []


# The documentation is checked against the table: a setting added, renamed or given a new
# default without its line in README.md and config/ fails here.
ROOT = Path(__file__).resolve().parents[1]


def documented_default(spec) -> str:
    """A default as the README's configuration table writes it."""
    if spec.derived_doc is not None:
        return spec.derived_doc
    if spec.default is None:
        return "unset"
    if spec.default == ():
        return "none"
    if isinstance(spec.default, bool | str):
        return f"`{env_text(spec.default)}`"
    return env_text(spec.default)


def readme_settings() -> dict[str, str]:
    """`variable -> default` from the table of the README's "Configuration" section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 3:
            name = cells[0].strip("`")
            assert name not in rows, f"{name} documented twice"
            rows[name] = cells[1]
    return rows


def test_readme_documents_every_setting_with_its_default():
    documented = readme_settings()
    table = {spec.env: documented_default(spec) for spec in TABLE}
    assert sorted(documented) == sorted(table)  # none missing, none that does not exist
    assert documented == table


def test_readme_names_the_deprecated_aliases():
    section = (ROOT / "README.md").read_text().split("\n## Configuration\n", 1)[1]
    for spec in TABLE:
        for alias in spec.aliases:
            assert f"`{alias}`" in section


def env_file_names(path: Path) -> list[str]:
    """Every NAME in NAME=value lines, commented out (#NAME=) or not."""
    return re.findall(r"^#?([A-Z][A-Z0-9_]*)=", path.read_text(), re.MULTILINE)


@pytest.mark.parametrize("name", ["production.env.example", "development.env"])
def test_example_env_files_name_real_settings_only(name):
    real = {spec.env for spec in TABLE}
    names = env_file_names(ROOT / "config" / name)
    assert names and set(names) <= real, set(names) - real
    assert len(names) == len(set(names)), "a setting listed twice"


def test_production_env_example_names_every_setting():
    assert set(env_file_names(ROOT / "config" / "production.env.example")) == {
        spec.env for spec in TABLE
    }


def test_development_env_is_a_valid_development_environment():
    values = {}
    for line in (ROOT / "config" / "development.env").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    s = Settings.from_env(values)
    assert s.env == "development" and s.upstream == "demo" and s.warnings() == []


def _name(problem: str) -> str:
    return re.split(r"[=:]", problem, maxsplit=1)[0]
