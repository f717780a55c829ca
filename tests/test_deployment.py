"""The deployment files (systemd/, config/): checked by their own tools where installed,
and against the code they configure.

Each test skips where its tool (systemd-analyze 250+, nginx, openssl, promtool) is not
installed, except in CI (CI=true), which installs them all: there it fails.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ci import missing
from walletd.api.openapi import openapi_document
from walletd.app import create_app
from walletd.appkeys import METRICS
from walletd.auth.middleware import MAX_HEADER_BYTES, MAX_LINE_BYTES
from walletd.cli import EXIT_CONFIG, build_parser
from walletd.config import TABLE, Settings
from walletd.env import ConfigError
from walletd.upstream.breaker import CircuitState

ROOT = Path(__file__).resolve().parents[1]
UNITS = ("walletd.service", "walletd@.service")
INSTANCE = "8081"
# The install path of the units' ExecStart (docs/DEPLOYMENT.md).
INSTALLED_WALLETD = "/opt/walletd/.venv/bin/walletd"
# Keys that may differ between the two units; everything else, the sandboxing above
# all, must be the same.
PER_UNIT = {"ExecStart", "EnvironmentFile", "SyslogIdentifier", "Description"}
MAX_EXPOSURE = 2.0


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed")
    return path


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def unit_settings(path: Path) -> dict[str, list[str]]:
    """`[Section] Key=value` lines as {"Section.Key": [values, in order]}."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return out


def env_file(path: Path) -> dict[str, str]:
    """The assignments of an EnvironmentFile (its examples use no quoting)."""
    out = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            out[name.strip()] = value.strip()
    return out


def seconds(timespan: str) -> float:
    """A systemd or nginx time span of one unit: 20, 20s, 660s, 2min, 1m."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|m|min)?", timespan)
    assert match, f"unexpected time span {timespan!r}"
    return float(match[1]) * (60 if match[2] in ("m", "min") else 1)


@pytest.fixture(scope="module")
def analyze() -> str:
    """systemd-analyze 250 or later: `security --offline` and `--recursive-errors` are
    from 250 (Debian 12 has 252, Ubuntu 22.04 only 249)."""
    path = tool("systemd-analyze")
    version = re.match(r"systemd (\d+)", run(path, "--version").stdout)
    if version is None or int(version[1]) < 250:
        missing("systemd-analyze is older than 250")
    return path


@pytest.fixture
def verifiable_units(tmp_path: Path) -> Iterator[Path]:
    """Copies of the units whose ExecStart names a binary that exists here: verify
    insists on it, and /opt/walletd is the production layout, not this checkout's.
    The template is verified through an instance (a link named walletd@8081.service),
    so that its %i specifiers are expanded too."""
    stand_in = Path(sys.executable).with_name("walletd")
    if not stand_in.exists():  # not pip-installed: any executable will do for verify
        stand_in = Path(sys.executable)
    for name in UNITS:
        text = (ROOT / "systemd" / name).read_text()
        assert INSTALLED_WALLETD in text
        (tmp_path / name).write_text(text.replace(INSTALLED_WALLETD, str(stand_in)))
    (tmp_path / f"walletd@{INSTANCE}.service").symlink_to("walletd@.service")
    yield tmp_path


@pytest.mark.parametrize("unit", ["walletd.service", f"walletd@{INSTANCE}.service"])
def test_unit_passes_systemd_analyze_verify(analyze, verifiable_units, unit):
    # --recursive-errors=no: only this unit's problems count, not those of units it
    # names (network-online.target) as the host happens to have them. User=walletd need
    # not exist for verify, as root or not.
    result = run(
        analyze, "verify", "--man=no", "--recursive-errors=no", f"./{unit}", cwd=verifiable_units
    )
    ours = [line for line in result.stderr.splitlines() if "walletd" in line]
    assert result.returncode == 0 and not ours, result.stderr


@pytest.mark.parametrize("unit", ["walletd.service", f"walletd@{INSTANCE}.service"])
def test_unit_exposure_is_at_most_two(analyze, verifiable_units, unit):
    """`systemd-analyze security` rates 0 (locked down) to 10 (exposed); --offline=yes
    reads the file instead of asking a running systemd."""
    result = run(
        analyze, "security", "--offline=yes", "--no-pager", f"./{unit}", cwd=verifiable_units
    )
    assert result.returncode == 0, result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert match, result.stdout
    exposure = float(match[1])
    print(f"{unit}: overall exposure level {exposure}")
    assert exposure <= MAX_EXPOSURE, result.stdout


@pytest.mark.parametrize("name", UNITS)
def test_unit_agrees_with_the_code(name):
    unit = unit_settings(ROOT / "systemd" / name)
    service = {k.removeprefix("Service."): v for k, v in unit.items() if k.startswith("Service.")}
    assert service["Type"] == ["notify"]  # walletd sends READY=1 once bound (sdnotify)
    assert service["NotifyAccess"] == ["main"]
    assert seconds(service["WatchdogSec"][0]) > 0
    assert seconds(service["TimeoutStopSec"][0]) > Settings().shutdown_grace_s
    assert str(EXIT_CONFIG) in service["RestartPreventExitStatus"][0].split()
    assert service["Restart"] == ["on-failure"]
    assert service["ExecReload"][0].split() == ["/bin/kill", "-HUP", "$MAINPID"]
    assert service["EnvironmentFile"][0] == "/etc/walletd/walletd.env"
    binary, *args = service["ExecStart"][0].replace("%i", INSTANCE).split()
    assert binary == INSTALLED_WALLETD
    assert build_parser().parse_args(args).command == "serve"
    # The key store of the production example lives in the unit's writable state dir.
    state_dir = f"/var/lib/{service['StateDirectory'][0]}"
    assert service["ReadWritePaths"] == [state_dir]
    example = env_file(ROOT / "config" / "production.env.example")
    assert Path(example["API_KEYS_FILE"]).parent == Path(state_dir)


def test_template_unit_differs_from_the_main_unit_only_in_its_instance():
    main = unit_settings(ROOT / "systemd" / "walletd.service")
    template = unit_settings(ROOT / "systemd" / "walletd@.service")
    same = {k: v for k, v in main.items() if k.split(".", 1)[1] not in PER_UNIT}
    assert {k: v for k, v in template.items() if k.split(".", 1)[1] not in PER_UNIT} == same
    assert template["Service.ExecStart"] == [main["Service.ExecStart"][0] + " --port %i"]
    assert template["Service.EnvironmentFile"] == [
        *main["Service.EnvironmentFile"],
        "-/etc/walletd/walletd-%i.env",
    ]


class RecordingEnv(dict[str, str]):
    """An environment that remembers every variable Settings asks for."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, key, default=None):
        self.asked.add(key)
        return super().get(key, default)


def test_production_env_example_names_every_setting():
    recorder = RecordingEnv({})
    Settings.from_env(recorder)
    text = (ROOT / "config" / "production.env.example").read_text()
    named = set(re.findall(r"^#?([A-Z][A-Z0-9_]*)=", text, re.MULTILINE))
    deprecated = {alias for spec in TABLE for alias in spec.aliases}  # asked, not advertised
    assert recorder.asked - named == deprecated


def test_production_env_example_is_refused_until_its_secrets_are_filled_in():
    example = env_file(ROOT / "config" / "production.env.example")
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(example)
    assert {p.split(":")[0] for p in refused.value.problems} == {"SECRET_KEY", "HELIUS_KEY"}
    filled = {**example, "SECRET_KEY": secrets.token_urlsafe(48), "HELIUS_KEY": "helius-key"}
    settings = Settings.from_env(filled)
    assert settings.is_production and settings.api_key_required
    [warning] = settings.warnings()
    assert warning.startswith("REDIS_URL has no password")
    password = {"REDIS_URL": filled["REDIS_URL"].replace("redis://", "redis://:pw@")}
    assert Settings.from_env({**filled, **password}).warnings() == []


def nginx_directives(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.endswith(";"):
            name, _, value = line[:-1].partition(" ")
            out.setdefault(name, []).append(value.strip())
    return out


def test_nginx_config_outlasts_streams_and_matches_walletd_header_limits():
    nginx = nginx_directives((ROOT / "config" / "nginx-walletd.conf").read_text())
    assert seconds(nginx["proxy_read_timeout"][0]) > Settings().sse_max_stream_duration_s
    assert nginx["proxy_buffering"] == ["off"] and nginx["proxy_http_version"] == ["1.1"]
    count, size = nginx["large_client_header_buffers"][0].split()
    line_bytes = int(size.removesuffix("k")) * 1024
    assert line_bytes == MAX_LINE_BYTES and int(count) * line_bytes == MAX_HEADER_BYTES


def test_nginx_config_is_the_first_line_against_oversized_and_abusive_requests():
    """nginx refuses what aiohttp would answer with its own text/plain 400 (README,
    "Request limits"), takes no bodies, and limits requests and connections per address."""
    text = (ROOT / "config" / "nginx-walletd.conf").read_text()
    nginx = nginx_directives(text)
    assert int(nginx["client_max_body_size"][0].removesuffix("k")) <= 1
    assert int(nginx["client_header_buffer_size"][0].removesuffix("k")) * 1024 <= MAX_LINE_BYTES
    assert [z.split()[0] for z in nginx["limit_req_zone"]] == ["$binary_remote_addr"]
    assert [z.split()[0] for z in nginx["limit_conn_zone"]] == ["$binary_remote_addr"]
    assert nginx["limit_req"][0].startswith("zone=walletd_req")
    assert nginx["limit_conn"][0].startswith("walletd_conn")
    assert nginx["limit_req_status"] == ["429"] and nginx["limit_conn_status"] == ["429"]


@pytest.mark.parametrize("name", UNITS)
def test_unit_caps_memory_above_the_history_budget_and_streams(name):
    unit = unit_settings(ROOT / "systemd" / name)
    mib = {"M": 1, "G": 1024}

    def size(value: str) -> int:
        return int(value[:-1]) * mib[value[-1]]

    high, top = size(unit["Service.MemoryHigh"][0]), size(unit["Service.MemoryMax"][0])
    assert Settings().history_memory_mb < high < top
    assert int(unit["Service.TasksMax"][0]) > 32
    assert unit["Service.PrivateUsers"] == ["yes"]


def test_nginx_accepts_the_config(tmp_path):
    nginx = tool("nginx")
    openssl = tool("openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = run(
        openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        "-subj", "/CN=api.example.com", "-keyout", key, "-out", cert,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    conf = (ROOT / "config" / "nginx-walletd.conf").read_text()
    conf = re.sub(r"ssl_certificate\s+\S+;", f"ssl_certificate {cert};", conf)
    conf = re.sub(r"ssl_certificate_key\s+\S+;", f"ssl_certificate_key {key};", conf)
    conf = re.sub(r"access_log\s+/\S+", f"access_log {tmp_path}/access.log", conf)
    (tmp_path / "walletd.conf").write_text(conf)
    # A wrapper as a distribution's nginx.conf would be, with every path in tmp_path so
    # that `nginx -t` needs no root.
    temp_paths = "\n".join(
        f"    {kind}_temp_path {tmp_path}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n{temp_paths}\n    include {tmp_path}/walletd.conf;\n}}\n"
    )
    result = run(nginx, "-t", "-e", "stderr", "-p", tmp_path, "-c", tmp_path / "nginx.conf")
    assert result.returncode == 0, result.stderr


def test_promtool_accepts_the_alert_rules():
    promtool = tool("promtool")
    result = run(promtool, "check", "rules", ROOT / "config" / "prometheus-alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_use_metrics_walletd_exposes():
    """A renamed metric would leave its alert silently never firing."""
    registry = create_app(Settings.from_env({}))[METRICS].registry
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
    }
    exposed = set()
    for family in registry.collect():
        exposed.add(family.name)
        exposed.update(family.name + s for s in suffixes.get(family.type, ()))
    rules = (ROOT / "config" / "prometheus-alerts.yml").read_text()
    used = set(re.findall(r"walletdoctor_\w+", rules))
    assert used and used - exposed == set()
    states = re.findall(r'state=~?"([^"]+)"', rules)
    assert {s for v in states for s in v.split("|")} <= {s.value for s in CircuitState}


def test_the_products_documentation_names_nothing_outside_the_repository():
    """README, docs/ and /openapi.json are the whole documentation: none may send its
    reader to the internal contract or to a file beside the repository."""
    texts = {p.name: p.read_text() for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]}
    texts["/openapi.json"] = json.dumps(openapi_document(Settings.from_env({})))
    for name, text in texts.items():
        assert not re.search(r"\bSPEC\b|\.\./", text), name
