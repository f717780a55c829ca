"""Live follow against the fake Helius (a real HTTP server): transactions land while
streams are open, followers come and go, the upstream fails; one poll per wallet."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.clocks import FakeClock
from tests.fake_helius import RPC, TRANSACTIONS, FakeHelius
from tests.sse_client import EventReader
from tests.support import WALLET
from tests.waiting import eventually
from walletd.appkeys import LIVE
from walletd.upstream.breaker import CircuitBreaker
from walletd.upstream.demo import _Wallet
from walletd.upstream.demo_live import LiveTicks
from walletd.upstream.helius.reader import parse_transaction

URL = f"/v4/wallet/{WALLET}/stream"
POLL = 0.1
FOLLOW_ENV = {"FOLLOW_POLL_INTERVAL": POLL, "SSE_KEEPALIVE_INTERVAL": 0.3, "SSE_BATCH_SIZE": 7}
_TICKS = LiveTicks(10.0, FakeClock(1_800_000_000))
_WALLET = _Wallet(WALLET)


class Landing:
    """New transactions of WALLET: tick k's swap of the demo generator, always a trade."""

    def __init__(self, fake: FakeHelius) -> None:
        self.fake = fake
        self.k = 180_000_000

    def land(self, count: int = 1) -> list[str]:
        txs = []
        for _ in range(count):
            self.k += 1
            txs.append(_TICKS.transaction(_WALLET, self.k))
        self.fake.add_newer(WALLET, list(reversed(txs)))
        return [tx["signature"] for tx in txs]


def trade_signatures(fake: FakeHelius) -> list[str]:
    """Every trade of WALLET the fake serves now, newest first."""
    out = []
    for entry in fake.histories[WALLET].entries:
        if parse_transaction(fake.transaction(entry.signature), WALLET) is not None:
            out.append(entry.signature)
    return out


@pytest.fixture
async def fake(aiohttp_server: Any) -> Any:
    fake = FakeHelius(synthetic={WALLET: 60})
    fake.server = await aiohttp_server(fake.app())  # type: ignore[attr-defined]
    return fake


@pytest.fixture
async def client(serve: Any, fake: Any) -> Any:
    return await serve(**fake.walletd_env(fake.server, **FOLLOW_ENV))


def polls(fake: FakeHelius) -> list[Any]:
    return [e for e in fake.calls(RPC) if e.until is not None or e.before is None]


async def test_follow_delivers_every_trade_once_across_resumes(client: Any, fake: Any) -> None:
    landing = Landing(fake)
    received: list[str] = []
    last_id: str | None = None
    # Cut after the 3rd event (inside the history), at caught_up, and twice live; land
    # transactions while away and while connected.
    for stop in ("trades", "caught_up", "live", "live", "end"):
        headers = {"Last-Event-ID": last_id} if last_id else {}
        async with client.get(URL, params={"follow": "true"}, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            reader = EventReader(resp)
            if stop == "trades":
                for _ in range(2):
                    await reader.until("trades")
            elif stop == "caught_up":
                await reader.until("caught_up")
            else:
                await reader.until("caught_up")
                landing.land(2)
                want = set(trade_signatures(fake))
                while not want <= set(received) | {
                    t["signature"]
                    for e in reader.events
                    if e.name == "trades"
                    for t in e.data["trades"]
                }:
                    await reader.until("trades")
            for event in reader.events:
                if event.name == "trades":
                    received += [t["signature"] for t in event.data["trades"]]
                if event.id is not None:
                    last_id = event.id
        if stop != "end":
            landing.land(3)  # while away
    assert len(received) == len(set(received)), "a trade sent twice"
    assert set(received) == set(trade_signatures(fake))


async def test_one_poll_per_interval_for_many_followers(client: Any, fake: Any) -> None:
    followers = 100
    responses = [await client.get(URL, params={"follow": "true"}) for _ in range(followers)]
    readers = [EventReader(resp) for resp in responses]
    try:
        await asyncio.gather(*(reader.until("caught_up") for reader in readers))
        before = len(polls(fake))
        started = asyncio.get_running_loop().time()
        landed = Landing(fake).land(1)
        events = await asyncio.gather(*(reader.until("trades") for reader in readers))
        assert all(e[-1].data["trades"][-1]["signature"] == landed[0] for e in events)
        await asyncio.sleep(1.0)  # a measurement window: count the polls made in it
        elapsed = asyncio.get_running_loop().time() - started
        made = len(polls(fake)) - before
        assert made <= elapsed / POLL + 2, f"{made} polls in {elapsed:.2f} s"
        fetched = [e for e in fake.calls(TRANSACTIONS) if landed[0] in e.asked]
        assert len(fetched) == 1  # the new transaction was fetched once for everyone
    finally:
        for resp in responses:
            resp.close()
    # The followers left: the poller stops with the last of them.
    await eventually(lambda: client.server.app[LIVE].feeds == 0, what="the poller stopped")


async def test_upstream_failure_in_live_phase_ends_resumably(serve: Any, fake: Any) -> None:
    breaker = CircuitBreaker(open_s=0.2)
    env = fake.walletd_env(fake.server, UPSTREAM_MAX_RETRIES=0, **FOLLOW_ENV)
    client = await serve(breaker=breaker, **env)
    landing = Landing(fake)
    async with client.get(URL, params={"follow": "true"}) as resp:
        reader = EventReader(resp)
        head = (await reader.until("caught_up"))[-1].id
        fake.faults.rpc.inject("status", status=500, times=None)
        error = (await reader.until("error"))[-1].data
    assert error["code"] in ("DATA_FETCH_ERROR", "SERVICE_UNAVAILABLE")
    assert error["last_event_id"] == head
    fake.faults.clear()
    landed = landing.land(2)
    headers = {"Last-Event-ID": head}

    async def resumed() -> list[str]:
        async with client.get(URL, params={"follow": "true"}, headers=headers) as resp:
            if resp.status != 200:
                return []
            reader = EventReader(resp)
            await reader.until("caught_up")
            return [t["signature"] for t in (await reader.until("trades"))[-1].data["trades"]]

    # Once the circuit lets calls through again, the resumed stream has them all.
    assert await eventually(resumed, every_s=0.1) == landed
