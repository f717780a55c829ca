"""Live follow against the fake Helius (a real HTTP server): transactions land while
streams are open, followers come and go, the upstream fails; one poll per wallet."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fake_helius import RPC, TRANSACTIONS, FakeHelius
from tests.follow_scaffold import (
    FOLLOW_ENV,
    URL,
    Landing,
    follow_with_cuts,
    many_followers_one_poll,
    sent,
    trade_signatures,
)
from tests.sse_client import EventReader
from tests.support import WALLET
from tests.waiting import eventually
from walletd.upstream.breaker import CircuitBreaker
from walletd.upstream.helius.reader import parse_transaction


@pytest.fixture
async def fake(aiohttp_server: Any) -> Any:
    fake = FakeHelius(synthetic={WALLET: 60})
    fake.server = await aiohttp_server(fake.app())  # type: ignore[attr-defined]
    return fake


@pytest.fixture
async def client(serve: Any, fake: Any) -> Any:
    return await serve(**fake.walletd_env(fake.server, **FOLLOW_ENV))


async def test_follow_delivers_every_trade_once_across_resumes(client: Any, fake: Any) -> None:
    await follow_with_cuts(client, Landing(fake), lambda: trade_signatures(fake, parse_transaction))


async def test_one_poll_per_interval_for_many_followers(client: Any, fake: Any) -> None:
    def polls() -> int:
        return sum(1 for e in fake.calls(RPC) if e.until is not None or e.before is None)

    def fetches(signature: str) -> int:
        return sum(1 for e in fake.calls(TRANSACTIONS) if signature in e.asked)

    await many_followers_one_poll(client, Landing(fake), polls, fetches)


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


async def test_followers_from_an_old_cached_head_share_one_catch_up(client: Any, fake: Any) -> None:
    """New followers whose history comes from the cache start at its head, older than
    the feed's: the first one fetches what is newer, the others get its catch-up
    replayed (one upstream call per wallet, not per follower), every trade once."""
    async with client.get(URL) as resp:  # the history, cached with its head
        cached_head = trade_signatures(fake, parse_transaction)[0]
        assert resp.status == 200
        await resp.read()
    landing = Landing(fake)
    landed = landing.land(2)
    # A follower resuming from the newest signature starts the feed there.
    first = await client.get(URL, params={"follow": "true"}, headers={"Last-Event-ID": landed[-1]})
    responses = [first]
    try:
        await EventReader(first).until("caught_up")
        every_trade = trade_signatures(fake, parse_transaction)
        for _ in range(10):  # one after the other: each finds the catch-ups before it
            responses.append(await client.get(URL, params={"follow": "true"}))
            reader = EventReader(responses[-1])
            await reader.until("caught_up")
            while not set(every_trade) <= set(sent(reader.events)):
                await reader.until("trades")
            assert sorted(sent(reader.events)) == sorted(every_trade)
        catch_ups = [e for e in fake.calls(RPC) if e.until == cached_head]
        assert len(catch_ups) == 1
    finally:
        for resp in responses:
            resp.close()
