"""Settings.from_env: SPEC defaults, typed parsing, every problem listed at once."""

from __future__ import annotations

import dataclasses

import pytest

from walletd.config import ConfigError, Settings


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


def test_masked_hides_secrets_and_repr_never_shows_them():
    s = Settings.from_env({"HELIUS_KEY": "helius-secret-value"})
    assert s.masked()["helius_key"] == "***"
    assert "helius-secret-value" not in repr(s)
    assert Settings.from_env({}).masked()["helius_key"] is None


def test_helius_settings_default_to_the_spec_and_validate_urls():
    s = Settings.from_env({})
    assert (s.helius_rps, s.helius_timeout_s, s.helius_max_retries) == (10.0, 30.0, 3)
    assert s.helius_retry_deadline_s == 20.0
    s = Settings.from_env({"HELIUS_RPC_URL": "http://127.0.0.1:9000/", "HELIUS_RPS": "50"})
    assert s.helius_rpc_url == "http://127.0.0.1:9000" and s.helius_rps == 50
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(
            {
                "HELIUS_RPC_URL": "ftp://x",
                "HELIUS_API_URL": "https://h/?api-key=secret",
                "HELIUS_RPS": "0",
            }
        )
    assert [p.split("=")[0] for p in caught.value.problems] == [
        "HELIUS_RPC_URL",
        "HELIUS_API_URL",
        "HELIUS_RPS",
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
    masked = s.masked()
    assert masked["redis_url"] == "redis://user:***@cache.internal:6380/2"
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
    "SECRET_KEY": "p" * 32,
    "API_KEY_REQUIRED": "true",
    "ALLOWED_ORIGINS": "https://app.example.com, https://admin.example.com:8443",
    "HELIUS_KEY": "helius-key",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
}
RULES = {
    "short secret": ({"SECRET_KEY": "p" * 31}, "SECRET_KEY"),
    "no secret": ({"SECRET_KEY": ""}, "SECRET_KEY"),
    "keys not required": ({"API_KEY_REQUIRED": "false"}, "API_KEY_REQUIRED"),
    "no origins": ({"ALLOWED_ORIGINS": ""}, "ALLOWED_ORIGINS"),
    "wildcard origin": ({"ALLOWED_ORIGINS": "*"}, "ALLOWED_ORIGINS"),
    "http origin": ({"ALLOWED_ORIGINS": "http://app.example.com"}, "ALLOWED_ORIGINS"),
    "no helius key": ({"HELIUS_KEY": ""}, "HELIUS_KEY"),
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
    assert "helius-key" not in str(caught.value) and "p" * 31 not in str(caught.value)


def test_every_production_problem_is_listed_together():
    broken = {"ENV": "production", "DEBUG": "1", "SENTRY_DSN": "http://k@sentry.example.com/1"}
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(broken)
    named = {problem.split(":")[0].split("=")[0] for problem in caught.value.problems}
    assert {"SECRET_KEY", "ALLOWED_ORIGINS", "HELIUS_KEY", "DEBUG", "SENTRY_DSN"} <= named


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
