"""Prometheus metrics (SPEC §7): one registry per app, read at scrape time.

The streaming hot path pays nothing: each stream already counts its own events, trades
and bytes, and a collector adds the live streams' counts to those of finished streams
when Prometheus asks. What is counted per stream or request (finished streams by
reason, their durations, HTTP requests) is kept in plain dicts and lists and exported
by the same collector: prometheus-client's labelled children take a lock per update and
its histogram walks its buckets in Python, 3 % of a new stream's instructions
(bench/stream_cost.py). The six `walletdoctor_*` series of the SPEC keep their exact
names: prometheus-client appends `_total` to every counter, so the cumulative ones are
exported untyped (Prometheus's rate() works on them all the same).

Labels stay low-cardinality: routes, endpoints, statuses, reasons; never a wallet, key
or stream id.
"""

from __future__ import annotations

import itertools
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    UnknownMetricFamily,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from walletd.errors import WalletdError
from walletd.observability.alerts import ErrorRate
from walletd.upstream.breaker import CircuitBreaker, CircuitState

STREAM_DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
UPSTREAM_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# The methods walletd routes; any other a client sends is `other` (SPEC §7): a label
# value never comes unbounded from a client.
ROUTED_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

LAG_BUCKETS = (0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300, 600)
# Live polls and deliveries aim at 50 ms: buckets fine enough around it to tell a p99.
LIVE_BUCKETS = (
    *(0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1),
    *(0.25, 0.5, 1, 2.5, 5),
)


class LiveBatchTimes(Protocol):
    """What a live batch tells the lag histograms (walletd/live/batch.py)."""

    @property
    def detected(self) -> float: ...

    @property
    def newest_time(self) -> int | None: ...


class StreamCounts(Protocol):
    """What a live stream tells the collector."""

    events: int
    trades_sent: int
    bytes_sent: int


@dataclass(slots=True)
class FinishedTotals:
    streams: int = 0
    events: int = 0
    trades: int = 0
    bytes: int = 0


class Buckets:
    """One histogram series as it is filled: a count per bucket (not cumulative; the
    last is +Inf's) and the sum, exported cumulative at scrape time (`add_to`)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # le: value <= its bound
        self.total += value

    def add_to(self, family: HistogramMetricFamily, labels: list[str]) -> None:
        les = [*map(floatToGoString, self.bounds), "+Inf"]
        cumulative = itertools.accumulate(self.counts)
        family.add_metric(labels, list(zip(les, cumulative, strict=True)), self.total)


class Metrics:
    """Every metric of one walletd app; see the module docstring for the design."""

    def __init__(
        self,
        *,
        live_streams: Iterable[StreamCounts],
        breaker: CircuitBreaker,
        redis_fallback: Callable[[], bool],
        error_rate: ErrorRate,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.error_rate = error_rate
        self.started = 0
        self.finished = FinishedTotals()
        r = self.registry
        # Exported by _LiveCollector (the module docstring says why).
        self.stream_durations: dict[str, Buckets] = {}  # by outcome
        self.streams_finished: dict[str, int] = {}  # by end reason
        self.http_requests: dict[tuple[str, str, int | str], int] = {}  # route, method, status
        self.upstream_latency = Histogram(
            "walletdoctor_upstream_request_seconds",
            "Upstream (Helius) request latency, by endpoint and status",
            ["endpoint", "status"],
            buckets=UPSTREAM_BUCKETS,
            registry=r,
        )
        self.upstream_errors = Counter(
            "walletdoctor_upstream_errors",
            "Failed upstream requests (before retries), by endpoint and status",
            ["endpoint", "status"],
            registry=r,
        )
        self.rate_limit_rejections = Counter(
            "walletdoctor_rate_limit_rejections",
            "Requests refused by the rate limits, by reason",
            ["reason"],
            registry=r,
        )
        self.cpu_percent = Gauge(
            "walletdoctor_process_cpu_percent", "Process CPU use, percent of one core", registry=r
        )
        self.rss_bytes = Gauge(
            "walletdoctor_process_resident_memory_bytes", "Process resident memory", registry=r
        )
        self.open_fds = Gauge("walletdoctor_open_fds", "Open file descriptors", registry=r)
        self.open_connections = Gauge(
            "walletdoctor_open_connections", "Open TCP connections of the process", registry=r
        )
        self.live_followers = Gauge(
            "walletdoctor_live_followers", "Open follow streams in their live phase", registry=r
        )
        self.live_pollers = Gauge(
            "walletdoctor_live_pollers",
            "Wallets this process follows (one poller each)",
            registry=r,
        )
        self.live_leases = Gauge(
            "walletdoctor_live_leases",
            "Followed wallets whose poller lease (REDIS_URL) this instance holds",
            registry=r,
        )
        self.live_poll_latency = Histogram(
            "walletdoctor_live_poll_seconds",
            "Duration of one live poll of a followed wallet (upstream round trips included)",
            buckets=LIVE_BUCKETS,
            registry=r,
        )
        self.live_lag = Histogram(
            "walletdoctor_live_lag_seconds",
            "From a live trade's block time to its write to a follower (newest of a batch)",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.live_write_delay = Histogram(
            "walletdoctor_live_delivery_seconds",
            "From a live batch's detection (end of its poll) to its write to a follower",
            buckets=LIVE_BUCKETS,
            registry=r,
        )
        r.register(_LiveCollector(self, live_streams, breaker, redis_fallback))

    def watch_live(
        self,
        followers: Callable[[], float],
        pollers: Callable[[], float],
        leases: Callable[[], float],
    ) -> None:
        """Read the live-follow gauges from the feeds at scrape time."""
        self.live_followers.set_function(followers)
        self.live_pollers.set_function(pollers)
        self.live_leases.set_function(leases)

    def live_delivered(self, batch: LiveBatchTimes) -> None:
        """A live batch was written to one follower."""
        self.live_write_delay.observe(time.monotonic() - batch.detected)
        newest = batch.newest_time
        if newest is not None:
            self.live_lag.observe(max(time.time() - newest, 0.0))

    def stream_started(self) -> None:
        self.started += 1

    def stream_finished(
        self, stream: StreamCounts, reason: str, duration_s: float, *, errored: bool
    ) -> None:
        """Fold a finished stream into the totals; `reason` is its end reason."""
        totals = self.finished
        totals.streams += 1
        totals.events += stream.events
        totals.trades += stream.trades_sent
        totals.bytes += stream.bytes_sent
        outcome = "error" if errored else reason  # complete, client_closed, reaped
        durations = self.stream_durations.get(outcome)
        if durations is None:
            durations = self.stream_durations[outcome] = Buckets(STREAM_DURATION_BUCKETS)
        durations.observe(duration_s)
        finished = self.streams_finished
        finished[reason] = finished.get(reason, 0) + 1
        self.error_rate.record(errored)

    def upstream_attempt(self, endpoint: str, status: str, seconds: float) -> None:
        """One upstream request (not call: each retry is its own attempt)."""
        self.upstream_latency.labels(endpoint, status).observe(seconds)
        if status != "200":
            self.upstream_errors.labels(endpoint, status).inc()

    def rejected(self, exc: WalletdError) -> None:
        """Count a rate-limit refusal by its reason (walletd/errors.py); others are not."""
        reason = exc.rejection_reason
        if reason is not None:
            self.rate_limit_rejections.labels(reason).inc()

    def http_request(self, route: str, method: str, status: int | str) -> None:
        """Count one request; `method` is any client string, folded to ROUTED_METHODS or
        `other`."""
        key = (route, method if method in ROUTED_METHODS else "other", status)
        counts = self.http_requests
        counts[key] = counts.get(key, 0) + 1

    def handler(self) -> Handler:
        return make_aiohttp_handler(self.registry)


def metrics_only_app(metrics: Metrics) -> web.Application:
    """The app of the METRICS_PORT listener (loopback only, no keys): /metrics alone."""
    app = web.Application()
    app.router.add_get("/metrics", metrics.handler(), name="metrics")
    return app


def _counter(
    name: str, doc: str, labels: list[str], counts: Iterable[tuple[list[str], int]]
) -> CounterMetricFamily:
    """A counter family of (label values, count) pairs, counted by walletd itself."""
    family = CounterMetricFamily(name, doc, labels=labels)
    for values, count in counts:  # collected on the event loop: nothing counts meanwhile
        family.add_metric(values, count)
    return family


class _LiveCollector(Collector):
    """The SPEC's six series, HTTP requests, the circuit and the Redis fallback, read at
    scrape time."""

    def __init__(
        self,
        metrics: Metrics,
        live_streams: Iterable[StreamCounts],
        breaker: CircuitBreaker,
        redis_fallback: Callable[[], bool],
    ) -> None:
        self._metrics = metrics
        self._live = live_streams
        self._breaker = breaker
        self._redis_fallback = redis_fallback

    def collect(self) -> Iterator[Metric]:
        m = self._metrics
        live = list(self._live)  # a registry iterates over a snapshot
        done = m.finished
        yield GaugeMetricFamily("walletdoctor_active_streams", "Streams open now", value=len(live))
        cumulative = (
            ("walletdoctor_total_streams", "Streams opened since start", m.started),
            (
                "walletdoctor_total_events",
                "SSE events sent since start",
                done.events + sum(s.events for s in live),
            ),
            (
                "walletdoctor_total_trades",
                "Trades sent since start",
                done.trades + sum(s.trades_sent for s in live),
            ),
            (
                "walletdoctor_bytes_sent",
                "Stream bytes sent since start",
                done.bytes + sum(s.bytes_sent for s in live),
            ),
        )
        for name, doc, value in cumulative:
            yield UnknownMetricFamily(name, doc, value=value)
        yield _counter(
            "walletdoctor_http_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            (
                ([route, method, str(status)], n)
                for (route, method, status), n in m.http_requests.items()
            ),
        )
        yield _counter(
            "walletdoctor_streams_finished",
            "Finished streams by end reason (complete, client_closed, reaped, an error code)",
            ["reason"],
            (([reason], n) for reason, n in m.streams_finished.items()),
        )
        durations = HistogramMetricFamily(
            "walletdoctor_stream_duration_seconds",
            "Duration of finished streams, by how they ended",
            labels=["outcome"],
        )
        for outcome, buckets in m.stream_durations.items():
            buckets.add_to(durations, [outcome])
        yield durations
        yield GaugeMetricFamily(
            "walletdoctor_error_rate",
            "Percent of streams finished within ERROR_RATE_WINDOW that ended in an error event",
            value=m.error_rate.percent(),
        )
        state = self._breaker.state
        circuit = GaugeMetricFamily(
            "walletdoctor_upstream_circuit_state",
            "1 for the upstream circuit breaker's current state",
            labels=["state"],
        )
        for option in CircuitState:
            circuit.add_metric([option.value], 1.0 if option is state else 0.0)
        yield circuit
        yield GaugeMetricFamily(
            "walletdoctor_redis_fallback",
            "1 while Redis is unreachable and limits are per process, in memory",
            value=1.0 if self._redis_fallback() else 0.0,
        )

    def describe(self) -> Iterable[Metric]:
        return ()  # described by collect() at scrape time: values change, names do not
