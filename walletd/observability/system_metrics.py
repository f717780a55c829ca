"""Process gauges sampled with psutil (SPEC §5: every SYSTEM_METRICS_INTERVAL)."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass

import psutil

from walletd.observability.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SystemSample:
    cpu_percent: float  # 100 = one core, since the previous sample
    rss_bytes: int
    open_fds: int
    open_connections: int  # -1: not readable here


class SystemSampler:
    """Reads this process's figures into the metrics' gauges.

    sample() blocks (tcp_connections reads every socket of the machine from /proc):
    call it in a thread.
    """

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._process = psutil.Process()
        self._cores = psutil.cpu_count() or 1
        self._last = (time.monotonic(), self._cpu_seconds())
        self._warned = False

    def _cpu_seconds(self) -> float:
        times = self._process.cpu_times()
        return float(times.user + times.system)

    def _cpu_percent(self) -> float:
        """Since the previous sample. CPU times tick in 10 ms steps, so over a short
        interval the ratio can overshoot: it is capped at what the machine has."""
        then, used_then = self._last
        now, used = time.monotonic(), self._cpu_seconds()
        self._last = (now, used)
        if now <= then:
            return 0.0
        return min(100.0 * self._cores, 100.0 * (used - used_then) / (now - then))

    def sample(self) -> SystemSample:
        process = self._process
        with process.oneshot():
            figures = SystemSample(
                cpu_percent=self._cpu_percent(),
                rss_bytes=process.memory_info().rss,
                open_fds=process.num_fds(),
                open_connections=self._connections(),
            )
        m = self._metrics
        m.cpu_percent.set(figures.cpu_percent)
        m.rss_bytes.set(figures.rss_bytes)
        m.open_fds.set(figures.open_fds)
        if figures.open_connections >= 0:
            m.open_connections.set(figures.open_connections)
        return figures

    def _connections(self) -> int:
        """Open TCP connections, or -1 where /proc/net is hidden (a sandbox such as
        systemd's ProcSubset=pid): the other figures must not be lost with it."""
        try:
            return tcp_connections()
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("connections_unavailable", extra={"error": type(exc).__name__})
            return -1


def tcp_connections() -> int:
    """This process's TCP sockets (what psutil's net_connections("tcp") counts): the
    sockets among its fds that /proc/net/tcp and tcp6 list. Counted by inode without
    decoding the lines, which psutil does in Python for every socket of the machine:
    most of a second at 10,000 streams, holding the GIL the event loop needs."""
    ours = set()
    for entry in os.scandir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile
            target = os.readlink(entry.path)
            if target.startswith("socket:["):
                ours.add(target[8:-1])
    count = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table, "rb") as lines:
            next(lines, None)  # the header
            count += sum(1 for line in lines if line.split(maxsplit=10)[9].decode() in ours)
    return count
