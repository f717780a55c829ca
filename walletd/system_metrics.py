"""Process gauges sampled with psutil (SPEC §5: every SYSTEM_METRICS_INTERVAL)."""

from __future__ import annotations

from dataclasses import dataclass

import psutil

from walletd.metrics import Metrics


@dataclass(frozen=True, slots=True)
class SystemSample:
    cpu_percent: float  # of one core, since the previous sample
    rss_bytes: int
    open_fds: int
    open_connections: int


class SystemSampler:
    """Reads this process's figures into the metrics' gauges.

    sample() blocks (net_connections reads every socket of the machine from /proc):
    call it in a thread.
    """

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # the first reading only starts the measurement

    def sample(self) -> SystemSample:
        process = self._process
        with process.oneshot():
            figures = SystemSample(
                cpu_percent=process.cpu_percent(None),
                rss_bytes=process.memory_info().rss,
                open_fds=process.num_fds(),
                open_connections=len(process.net_connections(kind="tcp")),
            )
        m = self._metrics
        m.cpu_percent.set(figures.cpu_percent)
        m.rss_bytes.set(figures.rss_bytes)
        m.open_fds.set(figures.open_fds)
        m.open_connections.set(figures.open_connections)
        return figures
