"""Live follow across instances on one real Redis: one poller per wallet, takeover, and
messages that fail their HMAC dropped."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from tests.fake_helius import RPC, FakeHelius
from tests.follow_scaffold import FOLLOW_ENV, POLL, URL, Landing, trade_signatures
from tests.sse_client import EventReader
from tests.support import WALLET, log_messages
from tests.waiting import eventually
from walletd.appkeys import LIVE
from walletd.upstream.helius.reader import parse_transaction

TTL = 0.6


@pytest.fixture
async def fake(aiohttp_server: Any) -> Any:
    fake = FakeHelius(synthetic={WALLET: 30})
    fake.server = await aiohttp_server(fake.app())  # type: ignore[attr-defined]
    return fake


@pytest.fixture
def env(fake: Any, redis_url: str, redis_prefix: str) -> dict[str, Any]:
    return fake.walletd_env(
        fake.server,
        REDIS_URL=redis_url,
        REDIS_PREFIX=redis_prefix,
        SECRET_KEY="k" * 40,
        STREAM_LEASE_TTL=TTL,
        **FOLLOW_ENV,
    )


def polls(fake: FakeHelius) -> int:
    return sum(1 for e in fake.calls(RPC) if e.until is not None)


async def test_one_poller_across_instances_and_takeover(serve: Any, fake: Any, env: Any) -> None:
    first, second = await serve(**env), await serve(**env)
    landing = Landing(fake)
    received: dict[int, list[str]] = {0: [], 1: []}
    first_resp = await first.get(URL, params={"follow": "true"})
    second_resp = await second.get(URL, params={"follow": "true"})
    readers = [EventReader(first_resp), EventReader(second_resp)]
    try:
        await asyncio.gather(*(r.until("caught_up") for r in readers))
        shared = [c.server.app[LIVE].coordinator for c in (first, second)]

        def holders() -> list[int]:
            return [i for i, s in enumerate(shared) if s.holding]

        holder = (await eventually(holders, what="a lease holder"))[0]
        assert len(holders()) == 1
        before, started = polls(fake), asyncio.get_running_loop().time()
        landed = landing.land(1)
        for i, reader in enumerate(readers):
            event = (await reader.until("trades"))[-1]
            received[i] += [t["signature"] for t in event.data["trades"]]
        await asyncio.sleep(1.0)  # a window to count polls in
        elapsed = asyncio.get_running_loop().time() - started
        assert polls(fake) - before <= elapsed / POLL + 2  # one instance polls, not two
        assert received == {0: landed, 1: landed}
        # Stop the holder: the other takes over within the lease TTL, nothing is lost.
        other = 1 - holder
        readers[holder].resp.close()
        await (first, second)[holder].close()
        await eventually(lambda: shared[other].holding, within_s=TTL * 3, what="a takeover")
        landed = landing.land(2)
        while not set(landed) <= set(received[other]):
            event = (await readers[other].until("trades"))[-1]
            received[other] += [t["signature"] for t in event.data["trades"]]
        assert received[other][-2:] == landed
        assert len(received[other]) == len(set(received[other]))
        assert set(received[other]) <= set(trade_signatures(fake, parse_transaction))
    finally:
        first_resp.close()
        second_resp.close()


async def test_forged_live_message_is_dropped_and_logged(
    serve: Any, env: Any, redis_client: Any, redis_prefix: str, caplog: Any
) -> None:
    named = log_messages(caplog, "walletd.live.shared")
    client = await serve(**env)
    async with client.get(URL, params={"follow": "true"}) as resp:
        reader = EventReader(resp)
        await reader.until("caught_up")
        channel = f"{redis_prefix}live:1:{WALLET}"
        await eventually(lambda: redis_client.pubsub_numsub(channel), what="a subscriber")
        await redis_client.publish(channel, b"00." + b'{"v":1}')
        await eventually(lambda: named("live_message_rejected"), what="the rejection")
        assert named("live_message_rejected")[0].levelno == logging.ERROR
        assert (await reader.next()).name == "heartbeat"  # no trades came of it
