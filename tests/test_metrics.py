"""/metrics after scripted streams: exact values, exact names, low-cardinality labels."""

from __future__ import annotations

import asyncio

import aiohttp
import psutil
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.metrics_core import HistogramMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from tests.clocks import FakeClock
from tests.fake_helius import FakeHelius
from tests.fakes import ListSource, demo_pages
from tests.redis_server import free_port
from tests.sse_client import EventReader, parse, read_events
from tests.support import WALLET
from tests.waiting import eventually
from walletd.appkeys import KEYSTORE, METRICS
from walletd.observability.metrics import STREAM_DURATION_BUCKETS, Buckets

EMPTY = "6RPHRQhmdzVdFbdK14KSbasyKJmC42dVgDprFKqdu7si"  # a demo address without history
STREAM = "/v4/wallet/{}/stream"
SPEC_NAMES = (
    "walletdoctor_active_streams",
    "walletdoctor_total_streams",
    "walletdoctor_total_events",
    "walletdoctor_total_trades",
    "walletdoctor_error_rate",
    "walletdoctor_bytes_sent",
)


class Scrape:
    def __init__(self, text: str) -> None:
        self.text = text
        self.samples = [s for f in text_string_to_metric_families(text) for s in f.samples]

    def value(self, name: str, **labels: str) -> float:
        found = [s.value for s in self.samples if s.name == name and s.labels == labels]
        assert len(found) == 1, (name, labels, found)
        return found[0]


async def scrape(client, **kwargs) -> Scrape:
    resp = await client.get("/metrics", **kwargs)
    assert resp.status == 200, await resp.text()
    return Scrape(await resp.text())


async def test_counters_equal_what_clients_received(serve):
    client = await serve()
    received = []
    for wallet, query in ((WALLET, {}), (WALLET, {}), (WALLET, {"limit": "5"}), (EMPTY, {})):
        resp = await client.get(STREAM.format(wallet), params=query)
        body = await resp.read()
        received.append((body, parse(body)))
    assert (await client.get(STREAM.format("nope"))).status == 400  # not a stream
    m = await scrape(client)
    assert m.value("walletdoctor_total_streams") == 4
    assert m.value("walletdoctor_active_streams") == 0
    assert m.value("walletdoctor_total_events") == sum(len(s.events) for _, s in received)
    assert m.value("walletdoctor_total_trades") == sum(len(s.trades) for _, s in received)
    assert m.value("walletdoctor_bytes_sent") == sum(len(body) for body, _ in received)
    assert m.value("walletdoctor_error_rate") == 25.0  # WALLET_NOT_FOUND: 1 of 4
    duration = "walletdoctor_stream_duration_seconds_count"
    assert m.value(duration, outcome="complete") == 3
    assert m.value(duration, outcome="error") == 1
    finished = "walletdoctor_streams_finished_total"
    assert m.value(finished, reason="error:WALLET_NOT_FOUND") == 1
    route = "/v4/wallet/{address}/stream"
    requests = "walletdoctor_http_requests_total"
    assert m.value(requests, route=route, method="GET", status="200") == 4
    assert m.value(requests, route=route, method="GET", status="400") == 1


async def test_unknown_paths_and_methods_are_counted_as_unmatched(serve):
    client = await serve(ALLOWED_ORIGINS="https://app.example.com")
    assert (await client.get("/no/such/route")).status == 404
    assert (await client.post("/health")).status == 405
    assert (await client.delete("/nope")).status == 404
    preflight = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"}
    assert (await client.options("/health", headers=preflight)).status == 200
    m = await scrape(client)
    requests = "walletdoctor_http_requests_total"
    assert m.value(requests, route="unmatched", method="GET", status="404") == 1
    assert m.value(requests, route="unmatched", method="other", status="405") == 1
    assert m.value(requests, route="unmatched", method="other", status="404") == 1
    assert m.value(requests, route="/health", method="OPTIONS", status="200") == 1


async def test_the_specs_names_are_exposed_exactly(serve):
    client = await serve()
    text = (await scrape(client)).text
    lines = {line.split(" ")[0] for line in text.splitlines() if not line.startswith("#")}
    for name in SPEC_NAMES:
        assert name in lines
        assert f"{name}_total" not in text


async def test_open_streams_count_while_they_run(serve):
    pages = await demo_pages(WALLET, page_size=30)
    client = await serve(source=ListSource.from_pages(pages, gates={1: asyncio.Event()}))
    streams = [await client.get(STREAM.format(WALLET)) for _ in range(3)]
    events = [await read_events(resp, 3) for resp in streams]  # connected, progress, trades
    m = await scrape(client)
    assert m.value("walletdoctor_active_streams") == 3
    assert m.value("walletdoctor_total_trades") == sum(
        len(e.data["trades"]) for es in events for e in es if e.name == "trades"
    )
    for resp in streams:
        resp.close()


async def test_labels_never_name_a_wallet_key_or_stream(serve):
    client = await serve()
    for _ in range(2):
        await (await client.get(STREAM.format(WALLET))).read()
    text = (await scrape(client)).text
    assert WALLET not in text and "stream_id" not in text


async def test_rate_limit_refusals_are_counted_by_reason(serve):
    client = await serve(RATE_LIMIT_REQUESTS=1)
    for _ in range(3):
        await client.get(STREAM.format(WALLET), params={"limit": "x"})
    # /metrics is counted too (SPEC §3: every request of a caller), so read it directly.
    m = Scrape(generate_latest(client.server.app[METRICS].registry).decode())
    assert m.value("walletdoctor_rate_limit_rejections_total", reason="request_window") == 2


async def test_upstream_latency_errors_and_circuit_state(serve, aiohttp_server):
    fake = FakeHelius(synthetic={WALLET: None})
    server = await aiohttp_server(fake.app())
    fake.faults.rpc.inject("status", times=1, status=503)
    client = await serve(**fake.walletd_env(server))
    await (await client.get(STREAM.format(WALLET))).read()
    m = await scrape(client)
    latency = "walletdoctor_upstream_request_seconds_count"
    rpc_calls = len(fake.calls("rpc"))
    assert m.value(latency, endpoint="signatures", status="503") == 1
    assert m.value(latency, endpoint="signatures", status="200") == rpc_calls - 1
    assert m.value(latency, endpoint="transactions", status="200") == len(
        fake.calls("transactions")
    )
    assert m.value("walletdoctor_upstream_errors_total", endpoint="signatures", status="503") == 1
    assert m.value("walletdoctor_upstream_circuit_state", state="closed") == 1
    assert m.value("walletdoctor_upstream_circuit_state", state="open") == 0
    assert m.value("walletdoctor_redis_fallback") == 0


@pytest.mark.parametrize(
    ("scopes", "status"), [(None, 401), (("stream",), 403), (("metrics",), 200)]
)
async def test_metrics_need_the_metrics_scope_when_keys_are_required(
    serve, tmp_path, scopes, status
):
    client = await serve(
        API_KEY_REQUIRED="true", SECRET_KEY="m" * 32, API_KEYS_FILE=str(tmp_path / "k.json")
    )
    headers = {}
    if scopes is not None:
        key, _ = await client.server.app[KEYSTORE].create("scraper", scopes, None)
        headers["Authorization"] = f"Bearer {key}"
    assert (await client.get("/metrics", headers=headers)).status == status


async def test_demo_source_streams_count_their_trades(serve):
    """Totals agree over many pages and a custom batch size too."""
    client = await serve(SSE_BATCH_SIZE=250)
    wallet = "GFmfk7ocGPRt19DuyGC6ezLtY1PtT6Zn1R53P169oSiL"
    stream = parse(await (await client.get(STREAM.format(wallet), params={"limit": 3000})).read())
    m = await scrape(client)
    assert m.value("walletdoctor_total_trades") == len(stream.trades) == 3000


async def test_metrics_port_serves_metrics_on_loopback_only(server_factory):
    metrics_port = free_port()
    server = await server_factory(METRICS_PORT=str(metrics_port), HOST="127.0.0.1")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/metrics") as resp:
            assert resp.status == 404  # not on the public listener
        async with http.get(f"http://127.0.0.1:{metrics_port}/metrics") as resp:
            assert resp.status == 200
            assert "walletdoctor_active_streams 0.0" in await resp.text()
    assert await listening_on(metrics_port) == ["127.0.0.1"]


async def listening_on(port: int) -> list[str]:
    """The addresses a TCP port is bound to, on this machine."""
    found = await asyncio.to_thread(psutil.net_connections, "tcp")
    return sorted(
        {
            c.laddr.ip
            for c in found
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
        }
    )


async def test_live_follow_histograms_resolve_the_50_ms_target(serve):
    """Poll and delivery latencies in buckets fine enough around 50 ms to tell a p99
    (bench/follow_load.py), and the live gauges of one follower without Redis."""
    clock = FakeClock(1_800_000_000.0)
    client = await serve(wall_clock=clock, DEMO_LIVE_INTERVAL=10, FOLLOW_POLL_INTERVAL=0.1)
    async with client.get(STREAM.format(WALLET), params={"follow": "true"}) as resp:
        reader = EventReader(resp)
        await reader.until("caught_up")
        clock.advance(10)
        await reader.until("trades")

        async def delivered() -> bool:
            m = await scrape(client)
            return m.value("walletdoctor_live_delivery_seconds_count") == 1

        await eventually(delivered, what="the delivery observed")
        m = await scrape(client)
    assert m.value("walletdoctor_live_followers") == 1
    assert m.value("walletdoctor_live_pollers") == 1
    assert m.value("walletdoctor_live_leases") == 0  # no Redis: no lease
    fine = ["0.01", "0.02", "0.03", "0.04", "0.05", "0.075", "0.1"]
    for name in ("walletdoctor_live_delivery_seconds", "walletdoctor_live_poll_seconds"):
        bounds = [s.labels["le"] for s in m.samples if s.name == f"{name}_bucket"]
        assert [b for b in bounds if b in fine] == fine, bounds


class _Families:
    """A registry's collector of ready-made families."""

    def __init__(self, *families) -> None:
        self.families = families

    def collect(self):
        return iter(self.families)


def test_stream_durations_read_as_prometheus_clients_own_histogram_would():
    """Bucket bounds included (le), +Inf, sum and count: the same exposition as a
    prometheus-client Histogram fed the same values (its _created line aside)."""
    values = [0.0, 0.05, 0.1, 0.1000001, 2.5, 7.0, 599.9, 600.0, 601.0, 1e9]
    theirs = CollectorRegistry()
    reference = Histogram(
        "walletdoctor_stream_duration_seconds",
        "Duration of finished streams, by how they ended",
        ["outcome"],
        buckets=STREAM_DURATION_BUCKETS,
        registry=theirs,
    )
    ours = Buckets(STREAM_DURATION_BUCKETS)
    for value in values:
        reference.labels("complete").observe(value)
        ours.observe(value)
    family = HistogramMetricFamily(
        "walletdoctor_stream_duration_seconds",
        "Duration of finished streams, by how they ended",
        labels=["outcome"],
    )
    ours.add_to(family, ["complete"])
    mine = CollectorRegistry()
    mine.register(_Families(family))

    def lines(registry: CollectorRegistry) -> list[str]:
        text = generate_latest(registry).decode()
        return [line for line in text.splitlines() if "_created" not in line]

    assert lines(mine) == lines(theirs)
    assert ours.counts[0] == 3 and ours.counts[-1] == 2  # <= 0.1 (bound included); > 600
