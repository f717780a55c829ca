"""What the follow tests against a fake upstream share (test_follow_helius.py,
test_follow_rpc.py, test_follow_redis.py): transactions that land on a running fake,
the wallet's trades as the fake serves them, and the two scenarios every upstream must
pass: resuming from cuts anywhere with every trade exactly once, and one poll per
interval whatever the number of followers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from tests.clocks import FakeClock
from tests.fake_helius import RPC, FakeHelius
from tests.sse_client import EventReader
from tests.support import WALLET
from tests.waiting import eventually
from walletd.appkeys import LIVE
from walletd.upstream.demo import _Wallet
from walletd.upstream.demo_live import LiveTicks
from walletd.upstream.source import TxReader

URL = f"/v4/wallet/{WALLET}/stream"
POLL = 0.1
FOLLOW_ENV = {"FOLLOW_POLL_INTERVAL": POLL, "SSE_KEEPALIVE_INTERVAL": 0.3, "SSE_BATCH_SIZE": 7}
_TICKS = LiveTicks(10.0, FakeClock(1_800_000_000))
_WALLET = _Wallet(WALLET)

Shape = Callable[[Mapping[str, Any]], dict[str, Any]]


class Fake(Protocol):
    """What FakeHelius and FakeRpc both offer."""

    @property
    def histories(self) -> Mapping[str, Any]: ...

    def add_newer(self, address: str, txs: Any) -> None: ...

    def transaction(self, signature: str) -> dict[str, Any] | None: ...


def _as_is(tx: Mapping[str, Any]) -> dict[str, Any]:
    return dict(tx)


class Landing:
    """New transactions of WALLET: tick k's swap of the demo generator, always a trade,
    in the fake's shape (`shape` converts from Helius's, e.g. tests/rpc_shapes.to_rpc)."""

    def __init__(self, fake: Fake, shape: Shape = _as_is) -> None:
        self.fake = fake
        self.shape = shape
        self.k = 180_000_000

    def land(self, count: int = 1, *, failed: bool = False) -> list[str]:
        """Land `count` transactions (`failed`: ones that failed on chain, never
        trades); their signatures, oldest first."""
        txs = []
        for _ in range(count):
            self.k += 1
            txs.append(_TICKS.transaction(_WALLET, self.k))
            if failed:
                txs[-1]["transactionError"] = {"InstructionError": [3, {"Custom": 6001}]}
        self.fake.add_newer(WALLET, [self.shape(tx) for tx in reversed(txs)])
        return [tx["signature"] for tx in txs]


def trade_signatures(fake: Fake, read: TxReader) -> list[str]:
    """Every trade of WALLET the fake serves now, newest first (`read`: the upstream's
    reader of the transactions it serves)."""
    return [
        entry.signature
        for entry in fake.histories[WALLET].entries
        if read(fake.transaction(entry.signature), WALLET) is not None
    ]


def helius_polls(fake: FakeHelius) -> int:
    """getSignaturesForAddress calls with `until`: live polls (and catch-ups)."""
    return sum(1 for e in fake.calls(RPC) if e.until is not None)


def sent(events: list[Any]) -> list[str]:
    return [t["signature"] for e in events if e.name == "trades" for t in e.data["trades"]]


async def follow_with_cuts(client: Any, landing: Landing, trades: Callable[[], list[str]]) -> None:
    """Follow WALLET, cut after the 2nd `trades` event (inside the history), at
    `caught_up`, twice live, and once more to the end; land transactions while away
    and while connected. Every trade `trades()` lists arrives, none twice."""
    received: list[str] = []
    last_id: str | None = None
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
                want = set(trades())
                while not want <= set(received) | set(sent(reader.events)):
                    await reader.until("trades")
            received += sent(reader.events)
            last_id = next((e.id for e in reversed(reader.events) if e.id), last_id)
        if stop != "end":
            landing.land(3)  # while away
    assert len(received) == len(set(received)), "a trade sent twice"
    assert set(received) == set(trades())


async def many_followers_one_poll(
    client: Any, landing: Landing, polls: Callable[[], int], fetches: Callable[[str], int]
) -> None:
    """100 followers of WALLET: a landed trade reaches each; the upstream is polled
    once per interval (`polls()` counts the polls so far) and the new transaction is
    fetched once (`fetches(signature)`); the poller stops with the last follower."""
    followers = 100
    responses = [await client.get(URL, params={"follow": "true"}) for _ in range(followers)]
    readers = [EventReader(resp) for resp in responses]
    loop = asyncio.get_running_loop()
    try:
        await asyncio.gather(*(reader.until("caught_up") for reader in readers))
        before, started = polls(), loop.time()
        landed = landing.land(1)
        events = await asyncio.gather(*(reader.until("trades") for reader in readers))
        assert all(e[-1].data["trades"][-1]["signature"] == landed[0] for e in events)
        await asyncio.sleep(1.0)  # a measurement window: count the polls made in it
        elapsed = loop.time() - started
        made = polls() - before
        assert made <= elapsed / POLL + 2, f"{made} polls in {elapsed:.2f} s"
        assert fetches(landed[0]) == 1  # the new transaction was fetched once for everyone
    finally:
        for resp in responses:
            resp.close()
    await eventually(lambda: client.server.app[LIVE].feeds == 0, what="the poller stopped")
