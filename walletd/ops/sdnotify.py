"""systemd's notify protocol (sd_notify(3)): readiness, watchdog pings, stop and reload.

Hand-written rather than a dependency: it is one datagram on a Unix socket. NOTIFY_SOCKET,
WATCHDOG_USEC and WATCHDOG_PID are set by the service manager for this process, not by
the operator, so they are read here rather than in config.py.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import time
from collections.abc import Iterator, Mapping

log = logging.getLogger(__name__)


def notify(*states: str, env: Mapping[str, str] | None = None) -> bool:
    """Send `states` (e.g. "READY=1", "STATUS=serving") to the service manager as one
    datagram, one state per line.

    Returns False without sending when NOTIFY_SOCKET is unset (not run by systemd, or a
    unit without Type=notify), and False when sending fails. Never raises: a lost
    notification must not take a serving process down; the first failure of each kind
    is logged as a warning.
    """
    raw = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
    if not raw:
        return False
    if raw.startswith("@"):  # an abstract socket: a leading NUL byte on the wire
        address = "\0" + raw[1:]
    elif raw.startswith("/"):
        address = raw
    else:  # e.g. vsock:, which a VM's manager may use and walletd does not
        _warn_once(raw, "unsupported address")
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto("\n".join(states).encode(), address)
    except OSError as exc:
        _warn_once(raw, exc.strerror or type(exc).__name__)
        return False
    return True


@functools.cache
def _warn_once(notify_socket: str, error: str) -> None:
    """One line per socket and error: watchdog pings to a dead socket would repeat it."""
    log.warning("sd_notify_failed", extra={"notify_socket": notify_socket, "error": error})


def watchdog_interval_s(env: Mapping[str, str] | None = None) -> float | None:
    """How often to send WATCHDOG=1: half of WATCHDOG_USEC, as sd_watchdog_enabled(3)
    advises, so one late ping is not yet a missed deadline.

    None when the unit sets no WatchdogSec=, or when WATCHDOG_PID names another process
    (the variables were inherited, and the manager watches that process, not this one).
    """
    env = os.environ if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
        pid = int(env.get("WATCHDOG_PID") or os.getpid())
    except ValueError:
        return None
    if usec <= 0 or pid != os.getpid():
        return None
    return usec / 2_000_000


@contextlib.contextmanager
def reloading(env: Mapping[str, str] | None = None) -> Iterator[None]:
    """Bracket a reload (SIGHUP) with RELOADING=1 and READY=1, so `systemctl reload`
    reports when it is done. READY=1 follows even when the reload failed: the process
    still serves, on its previous configuration.

    MONOTONIC_USEC is required with RELOADING=1 by systemd 253+ (Type=notify-reload) and
    ignored by older versions.
    """
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notify("RELOADING=1", f"MONOTONIC_USEC={usec}", env=env)
    try:
        yield
    finally:
        notify("READY=1", env=env)
