"""Live follow across instances on one real Redis: one poller per wallet, takeover, and
messages that fail their HMAC dropped."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
from typing import Any

import base58
import pytest

from tests.fake_helius import FakeHelius, synthetic_transactions
from tests.follow_scaffold import (
    FOLLOW_ENV,
    POLL,
    URL,
    Landing,
    helius_polls,
    sent,
    trade_signatures,
)
from tests.sse_client import EventReader
from tests.support import WALLET, log_messages
from tests.waiting import eventually
from walletd.appkeys import LIVE
from walletd.upstream.helius.reader import parse_transaction

TTL = 0.6


def demo_wallets(count: int) -> list[str]:
    """`count` addresses other than WALLET that have a demo history."""
    found: list[str] = []
    for n in itertools.count():
        address = base58.b58encode(hashlib.sha256(b"follow-%d" % n).digest()).decode()
        if synthetic_transactions(address, 1):
            found.append(address)
        if len(found) == count:
            return found
    raise AssertionError  # pragma: no cover


OTHERS = demo_wallets(8)


@pytest.fixture
async def fake(aiohttp_server: Any) -> Any:
    fake = FakeHelius(synthetic={WALLET: 30, **dict.fromkeys(OTHERS, 5)})
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
        before, started = helius_polls(fake), asyncio.get_running_loop().time()
        landed = landing.land(1)
        for i, reader in enumerate(readers):
            event = (await reader.until("trades"))[-1]
            received[i] += [t["signature"] for t in event.data["trades"]]
        await asyncio.sleep(1.0)  # a window to count polls in
        elapsed = asyncio.get_running_loop().time() - started
        assert helius_polls(fake) - before <= elapsed / POLL + 2  # one instance polls, not two
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

        async def subscribed() -> int:
            return int((await redis_client.pubsub_numsub(channel))[0][1])

        await eventually(subscribed, what="a subscriber")
        await redis_client.publish(channel, b"00." + b'{"v":1}')
        await eventually(lambda: named("live_message_rejected"), what="the rejection")
        assert named("live_message_rejected")[0].levelno == logging.ERROR
        assert (await reader.next()).name == "heartbeat"  # no trades came of it


async def test_one_pubsub_connection_per_process_whatever_the_wallets(
    serve: Any, fake: Any, env: Any, redis_client: Any, redis_prefix: str
) -> None:
    instances = [await serve(**env), await serve(**env)]
    responses, readers = [], []

    async def follow(wallet: str) -> None:
        for client in instances:
            resp = await client.get(f"/v4/wallet/{wallet}/stream", params={"follow": "true"})
            responses.append(resp)
            readers.append(EventReader(resp))
            await readers[-1].until("caught_up")

    async def subscribers() -> list[dict[str, Any]]:
        """Our instances' pub/sub connections (the ones subscribed to a channel)."""
        return [c for c in await redis_client.client_list() if int(c.get("sub", 0)) > 0]

    async def leases() -> int:
        return len([k async for k in redis_client.scan_iter(f"{redis_prefix}live-lease:*")])

    try:
        await follow(WALLET)
        await eventually(lambda: leases(), what="the first lease")
        await asyncio.sleep(TTL)  # lease rounds and polls in steady state
        connections = len(await redis_client.client_list())
        assert [int(c["sub"]) for c in await subscribers()] == [1, 1]
        for wallet in OTHERS:
            await follow(wallet)

        async def all_leased() -> bool:
            return await leases() == 1 + len(OTHERS)

        await eventually(all_leased, what="a lease per wallet")
        await asyncio.sleep(TTL)
        # One pub/sub connection per instance, subscribed to every wallet's channel; no
        # connection more than with one wallet.
        assert [int(c["sub"]) for c in await subscribers()] == [9, 9]
        # A connection per wallet would add 16 (8 per instance). The pools may still grow
        # by a few while warming up: commands of the limiter and the lease rounds overlap,
        # the more so on a loaded machine (3 seen while other tests ran beside).
        assert len(await redis_client.client_list()) < connections + len(OTHERS)
        # And it delivers: a trade polled by one instance reaches both.
        landed = Landing(fake).land(1)
        for reader in readers[:2]:
            assert sent(await reader.until("trades")) == landed
    finally:
        for resp in responses:
            resp.close()

    # Followers gone: every channel unsubscribed, the connection kept for the next ones.
    async def unsubscribed() -> bool:
        return not await subscribers()

    await eventually(unsubscribed, what="every channel unsubscribed")
