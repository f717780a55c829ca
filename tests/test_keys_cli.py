"""`walletd keys ...`: outputs, JSON, and exit statuses, against real stores."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.support import make_settings
from walletd import cli
from walletd.auth import cli as keys_cli
from walletd.auth.keys import KeyHasher
from walletd.config import Settings

SECRET = "c" * 32
NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
KEY_LINE = re.compile(r"^wd_[A-Za-z0-9]{32}$", re.MULTILINE)


class FakeClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    return tmp_path / "api_keys.json"


@pytest.fixture
def settings(keys_file: Path) -> Settings:
    return make_settings(SECRET_KEY=SECRET, API_KEYS_FILE=keys_file)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="walletd")
    keys_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["keys", *argv])


class Runner:
    def __init__(self, settings: Settings, clock: FakeClock, capsys: Any) -> None:
        self.settings, self.clock, self.capsys = settings, clock, capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        status = keys_cli.run(parse(*argv), self.settings, clock=self.clock)
        out, err = self.capsys.readouterr()
        return status, out, err

    def json(self, *argv: str) -> Any:
        status, out, err = self(*argv, "--json")
        assert status == 0, err
        return json.loads(out)


@pytest.fixture
def walletd_keys(settings: Settings, clock: FakeClock, capsys: Any) -> Runner:
    return Runner(settings, clock, capsys)


def test_create_prints_the_key_on_its_own_line_and_its_id(
    walletd_keys: Runner, keys_file: Path
) -> None:
    status, out, err = walletd_keys("create", "--name", "ci bot", "--scopes", "stream,metrics")
    assert status == 0
    lines = out.splitlines()
    assert KEY_LINE.fullmatch(lines[0])
    record = json.loads(keys_file.read_text())["keys"][0]
    assert record["id"] in lines[1] and "stream,metrics" in lines[1]
    assert record["digest"] == KeyHasher(SECRET).digest(lines[0])
    assert "not shown again" in err


def test_create_json_includes_the_key_and_the_expiry(walletd_keys: Runner) -> None:
    created = walletd_keys.json("create", "--name", "temp", "--expires", "90d")
    assert KEY_LINE.fullmatch(created["key"])
    assert created["scopes"] == ["stream"]  # the default
    assert created["created_at"] == "2026-01-01T00:00:00Z"
    assert created["expires_at"] == "2026-04-01T00:00:00Z"
    assert created["state"] == "active" and "digest" not in created


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("create", "--name", "x", "--scopes", "stream,write"), "unknown scope 'write'"),
        (("create", "--name", "x", "--expires", "90 days"), "bad duration"),
        (("create", "--name", "x", "--expires", "0d"), "more than zero"),
        (("rotate", "k_000000000000", "--overlap=-1d"), "bad duration"),
        (("create",), "--name"),
        (("create", "--name", " "), "key name must be"),
    ],
)
def test_bad_arguments_are_usage_errors(argv: tuple[str, ...], message: str, capsys: Any) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(*argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90d", 90 * 86400),
        ("12h", 43200),
        ("30m", 1800),
        ("45s", 45),
        ("2w", 1209600),
        ("600", 600),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert keys_cli.parse_duration(text) == seconds


def test_list_shows_records_but_never_keys_or_digests(
    walletd_keys: Runner, keys_file: Path, clock: FakeClock
) -> None:
    created = [
        walletd_keys.json("create", "--name", "alpha"),  # same second: kept in file order
        walletd_keys.json("create", "--name", "beta", "--scopes", "admin", "--expires", "1h"),
    ]
    clock.now += 3600  # beta has expired
    status, out, _ = walletd_keys("list")
    assert status == 0
    digests = [k["digest"] for k in json.loads(keys_file.read_text())["keys"]]
    for secret in [c["key"] for c in created] + [c["key"][10:] for c in created] + digests:
        assert secret not in out
    rows = out.splitlines()
    assert rows[0].split() == ["ID", "NAME", "SCOPES", "PREFIX", "CREATED", "EXPIRES", "STATE"]
    assert rows[1].split() == [
        created[0]["id"], "alpha", "stream", created[0]["key"][:10] + "...",
        "2026-01-01T00:00:00Z", "never", "active",
    ]  # fmt: skip
    assert rows[2].split()[-2:] == ["2026-01-01T01:00:00Z", "expired"]

    listed = walletd_keys.json("list")
    assert [k["id"] for k in listed] == [c["id"] for c in created]
    assert [k["state"] for k in listed] == ["active", "expired"]
    assert all("digest" not in k and "key" not in k for k in listed)
    assert not any(c["key"] in json.dumps(listed) for c in created)


def test_list_of_an_empty_store(walletd_keys: Runner) -> None:
    assert walletd_keys("list")[:2] == (0, "no API keys\n")
    assert walletd_keys.json("list") == []


def test_revoke_marks_the_key_revoked(walletd_keys: Runner) -> None:
    created = walletd_keys.json("create", "--name", "leaked")
    status, out, _ = walletd_keys("revoke", created["id"])
    assert status == 0 and out == f"revoked {created['id']} (leaked)\n"
    assert walletd_keys.json("list")[0]["state"] == "revoked"
    assert walletd_keys.json("revoke", created["id"])["revoked"] is True  # idempotent


def test_rotate_prints_the_new_key_and_until_when_the_old_one_works(
    walletd_keys: Runner,
) -> None:
    created = walletd_keys.json("create", "--name", "svc")
    status, out, _ = walletd_keys("rotate", created["id"])
    assert status == 0
    lines = out.splitlines()
    assert KEY_LINE.fullmatch(lines[0]) and lines[0] != created["key"]
    assert f"{created['id']} stays valid until 2026-01-08T00:00:00Z" in out  # default 7d

    other = walletd_keys.json("create", "--name", "svc2")
    rotated = walletd_keys.json("rotate", other["id"], "--overlap", "12h")
    assert KEY_LINE.fullmatch(rotated["key"])
    assert rotated["name"] == "svc2" and rotated["id"] != other["id"]
    assert rotated["previous"]["id"] == other["id"]
    assert rotated["previous"]["expires_at"] == "2026-01-01T12:00:00Z"
    assert len(walletd_keys.json("list")) == 4


@pytest.mark.parametrize("command", ["revoke", "rotate"])
def test_unknown_id_exits_1_with_a_message(walletd_keys: Runner, command: str) -> None:
    status, out, err = walletd_keys(command, "k_000000000000")
    assert status == 1 and out == ""
    assert "k_000000000000" in err


def test_rotating_a_revoked_key_exits_1(walletd_keys: Runner) -> None:
    created = walletd_keys.json("create", "--name", "gone")
    walletd_keys("revoke", created["id"])
    status, _, err = walletd_keys("rotate", created["id"])
    assert status == 1 and "revoked" in err


def test_without_secret_key_exits_78_naming_it(
    keys_file: Path, clock: FakeClock, capsys: Any
) -> None:
    settings = make_settings(API_KEYS_FILE=keys_file)
    status = keys_cli.run(parse("list"), settings, clock=clock)
    assert status == keys_cli.EXIT_CONFIG == cli.EXIT_CONFIG == 78
    assert "SECRET_KEY" in capsys.readouterr().err
    assert not keys_file.exists()


def test_corrupt_key_file_exits_1_and_is_left_alone(walletd_keys: Runner, keys_file: Path) -> None:
    keys_file.write_text("{not json")
    status, _, err = walletd_keys("create", "--name", "x")
    assert status == 1 and str(keys_file) in err
    assert keys_file.read_text() == "{not json"


def test_redis_keystore(redis_url: str, redis_prefix: str, clock: FakeClock, capsys: Any) -> None:
    settings = make_settings(
        SECRET_KEY=SECRET, KEYSTORE="redis", REDIS_URL=redis_url, REDIS_PREFIX=redis_prefix
    )
    walletd_keys = Runner(settings, clock, capsys)
    created = walletd_keys.json("create", "--name", "shared", "--scopes", "stream,admin")
    clock.now += 1  # list is oldest first
    rotated = walletd_keys.json("rotate", created["id"], "--overlap", "1h")
    assert rotated["previous"]["expires_at"] == "2026-01-01T01:00:01Z"
    listed = walletd_keys.json("list")
    assert [(k["id"], k["scopes"]) for k in listed] == [
        (created["id"], ["stream", "admin"]),
        (rotated["id"], ["stream", "admin"]),
    ]


def test_unreachable_redis_exits_69(private_redis: Any, clock: FakeClock, capsys: Any) -> None:
    settings = make_settings(SECRET_KEY=SECRET, KEYSTORE="redis", REDIS_URL=private_redis.url)
    private_redis.stop()
    status = keys_cli.run(parse("list"), settings, clock=clock)
    assert status == keys_cli.EXIT_UNAVAILABLE == cli.EXIT_UNAVAILABLE
    assert "Redis failed: " in capsys.readouterr().err


def test_rotating_an_expired_key_exits_1_and_issues_nothing(
    walletd_keys: Runner, clock: FakeClock
) -> None:
    created = walletd_keys.json("create", "--name", "old", "--expires", "1h")
    clock.now += 3600
    status, out, err = walletd_keys("rotate", created["id"])
    assert status == 1 and out == "" and "expired" in err
    assert len(walletd_keys.json("list")) == 1


def test_rotating_an_already_rotated_key_exits_1_naming_its_replacement(
    walletd_keys: Runner,
) -> None:
    created = walletd_keys.json("create", "--name", "svc", "--expires", "30d")
    rotated = walletd_keys.json("rotate", created["id"], "--overlap", "1h")
    status, out, err = walletd_keys("rotate", created["id"])  # still valid for the overlap
    assert status == 1 and out == ""
    assert "already rotated" in err and rotated["id"] in err
    assert len(walletd_keys.json("list")) == 2


def test_rotation_gives_the_new_key_the_lifetime_the_original_was_given(
    walletd_keys: Runner, clock: FakeClock
) -> None:
    created = walletd_keys.json("create", "--name", "svc", "--expires", "30d")
    clock.now += 10 * 86_400
    first = walletd_keys.json("rotate", created["id"], "--overlap", "0")
    assert first["expires_at"] == "2026-02-10T00:00:00Z"  # 30 days from the rotation
    clock.now += 86_400
    second = walletd_keys.json("rotate", first["id"], "--overlap", "0")
    assert second["expires_at"] == "2026-02-11T00:00:00Z"  # not the cut overlap of `first`


def test_resign_signs_records_from_before_signing_once(
    walletd_keys: Runner, keys_file: Path
) -> None:
    created = walletd_keys.json("create", "--name", "legacy")
    doc = json.loads(keys_file.read_text())
    del doc["keys"][0]["sig"], doc["keys"][0]["replaced_by"]  # as the previous version wrote
    keys_file.write_text(json.dumps(doc))
    assert walletd_keys.json("list") == []  # refused until re-signed

    status, out, err = walletd_keys("resign")
    assert status == 0 and err == ""
    assert f"signed id: {created['id']}" in out and "1 record(s) signed" in out
    assert [k["id"] for k in walletd_keys.json("list")] == [created["id"]]
    assert walletd_keys.json("resign") == {"signed": [], "refused": []}


def test_resign_refuses_a_forged_record_and_exits_1(walletd_keys: Runner, keys_file: Path) -> None:
    created = walletd_keys.json("create", "--name", "victim")
    doc = json.loads(keys_file.read_text())
    doc["keys"][0]["scopes"] = ["stream", "admin"]
    keys_file.write_text(json.dumps(doc))
    status, out, err = walletd_keys("resign")
    assert status == 1
    assert "0 record(s) signed" in out
    assert created["id"] in err and "signature" in err
    assert json.loads(keys_file.read_text()) == doc  # left as it was, for inspection
