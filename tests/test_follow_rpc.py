"""Live follow over the `rpc` upstream against the fake JSON-RPC provider (a real HTTP
server): the history by gTFA or by signatures, then getSignaturesForAddress with `until`
and getTransaction for what lands; cuts anywhere, every trade once; one poll per wallet."""

from __future__ import annotations

from typing import Any

import base58
import pytest

from tests.fake_rpc import FakeRpc
from tests.follow_scaffold import (
    FOLLOW_ENV,
    URL,
    Landing,
    follow_with_cuts,
    many_followers_one_poll,
    sent,
    trade_signatures,
)
from tests.rpc_shapes import to_rpc
from tests.sse_client import EventReader
from tests.support import WALLET
from walletd.upstream.rpc.reader import parse_rpc_transaction

PATHS = ("gtfa", "signatures")
UNKNOWN = base58.b58encode(bytes(range(64))).decode()


@pytest.fixture
async def fake(aiohttp_server: Any) -> FakeRpc:
    fake = FakeRpc("k3y")
    fake.add_synthetic(WALLET, 60)
    fake.server = await aiohttp_server(fake.app())  # type: ignore[attr-defined]
    return fake


async def follower(serve: Any, fake: FakeRpc, method: str) -> Any:
    return await serve(**fake.walletd_env(fake.server, method, **FOLLOW_ENV))  # type: ignore[attr-defined]


def trades(fake: FakeRpc) -> list[str]:
    return trade_signatures(fake, parse_rpc_transaction)


@pytest.mark.parametrize("method", PATHS)
async def test_follow_delivers_every_trade_once_across_resumes(serve, fake, method):
    client = await follower(serve, fake, method)
    await follow_with_cuts(client, Landing(fake, to_rpc), lambda: trades(fake))


@pytest.mark.parametrize("method", PATHS)
async def test_one_poll_per_interval_for_many_followers(serve, fake, method):
    client = await follower(serve, fake, method)

    def polls() -> int:
        listings = fake.calls("getSignaturesForAddress")
        return sum(1 for e in listings if e.until is not None or e.before is None)

    def fetches(signature: str) -> int:
        return sum(1 for e in fake.calls("getTransaction") if e.signature == signature)

    await many_followers_one_poll(client, Landing(fake, to_rpc), polls, fetches)


@pytest.mark.parametrize("cursor", [UNKNOWN, f"{UNKNOWN}.{UNKNOWN}"])
async def test_unknown_follow_cursor_is_invalid_event_id(serve, fake, cursor):
    client = await follower(serve, fake, "auto")
    headers = {"Last-Event-ID": cursor}
    async with client.get(URL, params={"follow": "true"}, headers=headers) as resp:
        assert resp.status == 400
        assert (await resp.json())["code"] == "INVALID_EVENT_ID"


@pytest.mark.parametrize("method", PATHS)
async def test_failed_transactions_are_scanned_never_sent(serve, fake, method):
    """A failed transaction is listed (getSignaturesForAddress's `err`), never fetched
    nor sent, and moves the follower's id on: the resume after it repeats nothing."""
    client = await follower(serve, fake, method)
    landing = Landing(fake, to_rpc)
    async with client.get(URL, params={"follow": "true"}) as resp:
        reader = EventReader(resp)
        await reader.until("caught_up")
        first = landing.land(1)
        assert sent(await reader.until("trades")) == first
        failed = landing.land(1, failed=True)
        second = landing.land(1)
        event = (await reader.until("trades"))[-1]
    assert [t["signature"] for t in event.data["trades"]] == second
    assert event.id == second[0]
    assert not [e for e in fake.calls("getTransaction") if e.signature == failed[0]]
    headers = {"Last-Event-ID": first[0]}  # resume from before the failed one
    async with client.get(URL, params={"follow": "true"}, headers=headers) as resp:
        reader = EventReader(resp)
        await reader.until("caught_up")
        third = landing.land(1)
        got = sent(await reader.until("trades"))
        while not set(third) <= set(got):
            got += sent(await reader.until("trades"))
    assert got == second + third


@pytest.mark.parametrize("method", PATHS)
async def test_a_wallet_without_transactions_gets_its_first_trades(serve, aiohttp_server, method):
    fake = FakeRpc()
    fake.server = await aiohttp_server(fake.app())  # type: ignore[attr-defined]
    client = await follower(serve, fake, method)
    landing = Landing(fake, to_rpc)
    async with client.get(URL, params={"follow": "true"}) as resp:
        reader = EventReader(resp)
        caught_up = (await reader.until("caught_up"))[-1]
        assert caught_up.id is None and caught_up.data["trades_found"] == 0
        landed = landing.land(2)
        got = sent(await reader.until("trades"))
        while len(got) < 2:
            got += sent(await reader.until("trades"))
    assert got == landed
