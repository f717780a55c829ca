"""Live follow across real walletd processes on one Redis (SPEC §1): 100 followers of
one wallet split over two instances cost the upstream one poll per interval; when the
instance polling for everyone is killed (SIGKILL: its lease is never released), the
other takes over within STREAM_LEASE_TTL, the killed instance's followers resume on the
survivor with their last event id, and every follower ends up with every trade of the
wallet exactly once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fake_helius import FakeHelius
from tests.follow_scaffold import FOLLOW_ENV, POLL, URL, Landing, helius_polls, trade_signatures
from tests.sse_client import EventReader
from tests.support import UNLIMITED, WALLET
from tests.waiting import eventually
from tests.walletd_process import Server
from walletd.upstream.helius.reader import parse_transaction

TTL = 1.0  # STREAM_LEASE_TTL: a dead holder's lease lapses within it
FOLLOWERS = 100  # split evenly over the two instances


class Follower:
    """One follow stream of WALLET, resumed on another instance when its own dies."""

    def __init__(self, http: aiohttp.ClientSession, server: Server) -> None:
        self.http = http
        self.server = server
        self.received: list[str] = []  # trade signatures, across reconnects
        self.last_id: str | None = None
        self.reader: EventReader | None = None

    async def connect(self, server: Server) -> None:
        self.server = server
        headers = {"Last-Event-ID": self.last_id} if self.last_id else {}
        resp = await self.http.get(server.url + URL, params={"follow": "true"}, headers=headers)
        assert resp.status == 200, await resp.text()
        self.reader = EventReader(resp)
        await self._read_until("caught_up")

    async def _read_until(self, name: str) -> None:
        assert self.reader is not None
        while (event := await self.reader.next()).name != name:
            self._take(event)
        self._take(event)

    def _take(self, event: Any) -> None:
        if event.name == "trades":
            self.received += [t["signature"] for t in event.data["trades"]]
        self.last_id = event.id or self.last_id

    async def until_received(self, signatures: list[str]) -> None:
        while not set(signatures) <= set(self.received):
            await self._read_until("trades")

    async def drain(self) -> None:
        """Read what the dead instance sent before its connection dropped."""
        assert self.reader is not None
        try:
            while True:
                self._take(await self.reader.next())
        except (AssertionError, aiohttp.ClientError):
            pass  # the stream ended: cut short, as a crash leaves it
        self.reader.resp.close()

    def close(self) -> None:
        if self.reader is not None:
            self.reader.resp.close()


async def metric(http: aiohttp.ClientSession, server: Server, name: str) -> float:
    async with http.get(server.url + "/metrics") as resp:
        text = await resp.text()
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    return next(s.value for s in samples if s.name == name)


@pytest.fixture
async def fake(aiohttp_server: Any) -> Any:
    fake = FakeHelius(synthetic={WALLET: 30})
    fake.server = await aiohttp_server(fake.app())  # type: ignore[attr-defined]
    return fake


async def test_two_processes_one_poller_and_a_killed_holder_loses_nothing(
    server_factory: Any, fake: Any, redis_url: str, redis_prefix: str
) -> None:
    env = fake.walletd_env(
        fake.server,
        REDIS_URL=redis_url,
        REDIS_PREFIX=redis_prefix,
        SECRET_KEY="k" * 40,
        STREAM_LEASE_TTL=TTL,
        **UNLIMITED,
        **FOLLOW_ENV,
    )
    instances: list[Server] = [await server_factory(**env), await server_factory(**env)]
    readers = [asyncio.create_task(s.discard_logs()) for s in instances]
    landing = Landing(fake)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        followers = [Follower(http, instances[i % 2]) for i in range(FOLLOWERS)]
        try:
            await asyncio.gather(*(f.connect(f.server) for f in followers))

            async def leases() -> list[float]:
                held = [await metric(http, s, "walletdoctor_live_leases") for s in instances]
                return held if sorted(held) == [0, 1] else []

            holder = instances[(await eventually(leases, what="one lease holder")).index(1)]
            survivor = next(s for s in instances if s is not holder)

            # The survivor polls once, a beat after subscribing to the wallet's channel
            # (what was published before that is not coming), then never while the
            # holder lives.
            async def survivor_polled() -> bool:
                return await metric(http, survivor, "walletdoctor_live_poll_seconds_count") == 1

            await eventually(survivor_polled, what="the survivor's one poll")
            # One poll per interval for 100 followers on two instances, by the holder.
            polled = [
                await metric(http, s, "walletdoctor_live_poll_seconds_count")
                for s in (holder, survivor)
            ]
            before, started = helius_polls(fake), time.monotonic()
            landed = landing.land(1)
            await asyncio.gather(*(f.until_received(landed) for f in followers))
            await asyncio.sleep(1.0)  # a measurement window: count the polls made in it
            made, elapsed = helius_polls(fake) - before, time.monotonic() - started
            assert made <= elapsed / POLL + 2, f"{made} polls in {elapsed:.2f} s"
            assert await metric(http, survivor, "walletdoctor_live_poll_seconds_count") == polled[1]
            assert await metric(http, holder, "walletdoctor_live_poll_seconds_count") > polled[0]

            # Kill the holder; trades land while nobody polls.
            holder.proc.kill()
            await holder.proc.wait()
            killed = time.monotonic()
            landing.land(2)

            async def took_over() -> float:
                """When the survivor was seen holding the lease (0: not yet)."""
                held = await metric(http, survivor, "walletdoctor_live_leases")
                return time.monotonic() if held == 1 else 0.0

            takeover = asyncio.create_task(
                eventually(took_over, within_s=TTL * 3, every_s=0.05, what="a takeover")
            )
            # The orphans resume on the survivor: half at once (before the takeover, as
            # a browser's retry would), half after it.
            orphans = [f for f in followers if f.server is holder]
            await asyncio.gather(*(f.drain() for f in orphans))
            await asyncio.gather(*(f.connect(survivor) for f in orphans[::2]))
            # Within the TTL, plus a lease round (a third of it) and scrapes (slack for a
            # loaded machine).
            assert await takeover - killed <= TTL * 4 / 3 + 0.5
            await asyncio.gather(*(f.connect(survivor) for f in orphans[1::2]))
            landing.land(3)
            every_trade = trade_signatures(fake, parse_transaction)
            async with asyncio.timeout(15):
                await asyncio.gather(*(f.until_received(every_trade) for f in followers))
        finally:
            for follower in followers:
                follower.close()
            for task in readers:
                task.cancel()
    for follower in followers:
        assert Counter(follower.received) == Counter(every_trade)  # none lost, none twice
