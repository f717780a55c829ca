"""The notify protocol against real Unix datagram sockets, and `walletd serve` under it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.redis_server import free_port
from tests.walletd_process import serve_args, walletd
from walletd.ops.sdnotify import notify, reloading, watchdog_interval_s


@pytest.fixture
def manager(tmp_path, monkeypatch) -> Iterator[socket.socket]:
    """A service manager's notify socket at a filesystem path, named in NOTIFY_SOCKET."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield sock


def nothing_waiting(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        sock.recv(4096)
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(5)
    return False


def test_notify_sends_states_as_one_datagram_of_lines(manager):
    assert notify("READY=1", "STATUS=serving on :8080")
    assert notify("WATCHDOG=1")
    assert manager.recv(4096) == b"READY=1\nSTATUS=serving on :8080"
    assert manager.recv(4096) == b"WATCHDOG=1"
    assert nothing_waiting(manager)


def test_notify_reaches_an_abstract_socket(monkeypatch):
    name = f"walletd-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert notify("STOPPING=1")
        assert sock.recv(4096) == b"STOPPING=1"


def test_notify_uses_the_given_environment(manager):
    assert not notify("READY=1", env={})
    assert nothing_waiting(manager)


def test_notify_is_false_and_sends_nothing_when_notify_socket_is_unset(manager, monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not notify("READY=1")
    monkeypatch.setenv("NOTIFY_SOCKET", "")
    assert not notify("READY=1")
    assert nothing_waiting(manager)


def test_notify_is_false_and_warns_once_when_the_socket_is_unreachable(
    tmp_path, monkeypatch, caplog
):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    with caplog.at_level(logging.WARNING, logger="walletd.ops.sdnotify"):
        assert not notify("WATCHDOG=1")
        assert not notify("WATCHDOG=1")
    assert [r.message for r in caplog.records if r.name == "walletd.ops.sdnotify"] == [
        "sd_notify_failed"
    ]


def test_notify_is_false_for_an_address_it_cannot_use(monkeypatch, caplog):
    monkeypatch.setenv("NOTIFY_SOCKET", f"vsock:2:{uuid.uuid4().int % 10_000}")
    with caplog.at_level(logging.WARNING, logger="walletd.ops.sdnotify"):
        assert not notify("READY=1")
    assert [r.message for r in caplog.records if r.name == "walletd.ops.sdnotify"] == [
        "sd_notify_failed"
    ]


def test_reloading_brackets_the_reload_with_monotonic_time(manager):
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    with reloading():
        reloading_msg = manager.recv(4096).decode().split("\n")
        assert nothing_waiting(manager)  # READY=1 only once the body is done
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert reloading_msg[0] == "RELOADING=1"
    name, _, usec = reloading_msg[1].partition("=")
    assert name == "MONOTONIC_USEC" and before <= int(usec) <= after
    assert manager.recv(4096) == b"READY=1"


def test_reloading_sends_ready_even_when_the_reload_fails(manager):
    with pytest.raises(RuntimeError), reloading():
        raise RuntimeError("bad features file")
    assert manager.recv(4096).startswith(b"RELOADING=1\n")
    assert manager.recv(4096) == b"READY=1"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": str(os.getpid())}, 0.2),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "x"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_PID": str(os.getpid())}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_the_timeout_when_meant_for_this_process(env, expected):
    assert watchdog_interval_s(env) == expected


def test_watchdog_interval_reads_the_process_environment(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval_s() == 1.0


async def next_states(sock: socket.socket) -> list[str]:
    """The next datagram from a non-blocking socket, as its lines."""
    return (await asyncio.get_running_loop().sock_recv(sock, 4096)).decode().split("\n")


async def test_serve_notifies_ready_once_bound_watchdog_reload_and_stopping(tmp_path, monkeypatch):
    """The acceptance test of Type=notify, WatchdogSec= and ExecReload= (systemd/*.service)."""
    monkeypatch.delenv("WATCHDOG_PID", raising=False)  # the child inherits the environment
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.setblocking(False)
        port = free_port()
        env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000", "LOG_FORMAT": "json"}
        proc = await walletd(*serve_args(port), env=env, stdout=asyncio.subprocess.DEVNULL)
        try:
            try:
                async with asyncio.timeout(20):
                    while "READY=1" not in (states := await next_states(sock)):
                        assert "STOPPING=1" not in states
            except TimeoutError:
                pytest.fail("no READY=1 within 20 s: `walletd serve` does not notify systemd")
            # READY=1 means the listener is bound: a connection must succeed at once.
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()

            # WATCHDOG_USEC is 0.4 s, so pings are due about every 0.2 s: ten in two
            # seconds. Five leave room for a loaded machine and still prove that they come
            # more often than the deadline.
            pings = 0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    while True:
                        pings += (await next_states(sock)).count("WATCHDOG=1")
            assert pings >= 5

            # SIGHUP (systemctl reload): RELOADING=1 with the monotonic time, then READY=1.
            proc.send_signal(signal.SIGHUP)
            async with asyncio.timeout(20):
                while "RELOADING=1" not in (states := await next_states(sock)):
                    pass
                assert any(state.startswith("MONOTONIC_USEC=") for state in states)
                while "READY=1" not in (states := await next_states(sock)):
                    pass

            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(20):
                while "STOPPING=1" not in (states := await next_states(sock)):
                    assert "READY=1" not in states
                assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
