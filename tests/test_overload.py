"""Overload (SPEC §5): MAX_STREAMS and HISTORY_MEMORY_MB refuse new streams with 503
and Retry-After before they start, and history memory stays within its budget."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import base58

from tests.sse_client import parse, read_events
from tests.support import WALLET
from walletd.appkeys import HISTORY, KEYSTORE, OVERLOAD
from walletd.upstream.demo import DemoSource, history_size
from walletd.upstream.history import ADMIT_SHARE
from walletd.upstream.source import TxPage

STREAM = "/v4/wallet/{}/stream"
MB = 2**20


def demo_wallets(count: int, seed: int, *, at_least: int) -> list[str]:
    """`count` distinct random addresses whose demo histories hold `at_least` transactions."""
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < count:
        address = base58.b58encode(rng.randbytes(32)).decode()
        if history_size(address) >= at_least:
            out.append(address)
    return out


async def test_streams_beyond_max_streams_get_503_before_they_start(serve):
    client = await serve(MAX_STREAMS=2, DEMO_LATENCY_MS=60_000)  # the first page never comes
    held = [await client.get(STREAM.format(w)) for w in demo_wallets(2, 1, at_least=1)]
    for resp in held:
        assert resp.status == 200
        await read_events(resp, 2)  # connected, progress: both streams are open
    refused = await client.get(STREAM.format(WALLET))
    assert refused.status == 503
    assert (await refused.json())["code"] == "SERVICE_UNAVAILABLE"
    assert int(refused.headers["Retry-After"]) >= 1
    assert client.server.app[OVERLOAD].active == 2
    for resp in held:
        resp.close()


class HeldDemo:
    """The demo source, holding every history after `pages` pages until `release` is set:
    streams stay open with a known part of their history in memory."""

    def __init__(self, pages: int) -> None:
        self._demo = DemoSource()
        self._pages = pages
        self.release = asyncio.Event()
        self.holding = 0
        self.changed = asyncio.Event()

    async def pages(self, wallet: str, before: str | None) -> AsyncIterator[TxPage]:
        served = 0
        async for page in self._demo.pages(wallet, before):
            if served == self._pages:
                self.holding += 1
                self.changed.set()
                await self.release.wait()
            yield page
            served += 1

    async def close(self) -> None:
        await self._demo.close()


async def test_history_memory_stays_within_its_budget_under_many_large_wallets(serve, keyed):
    """Open streams of distinct large wallets, each from its own key, each holding three
    pages of history: the accounted memory stays within HISTORY_MEMORY_MB plus one
    stream's pages, and the first stream beyond it gets 503 + Retry-After before it
    starts. Released, every admitted stream completes and memory is admitted again."""
    source = HeldDemo(pages=3)
    client = await serve(source=source, HISTORY_MEMORY_MB=1, CACHE_TTL=3600, **keyed)
    history = client.server.app[HISTORY]
    store = client.server.app[KEYSTORE]
    budget = 1 * MB
    open_streams, refused = [], None
    for wallet in demo_wallets(40, 3, at_least=400):
        key, _ = await store.create("load", ("stream",), None)
        resp = await client.get(STREAM.format(wallet), headers={"X-API-Key": key})
        if resp.status == 503:
            refused = resp
            break
        assert resp.status == 200
        held = source.holding
        ended = asyncio.ensure_future(resp.read())
        while source.holding == held and not ended.done():  # holding its pages, or ended
            source.changed.clear()
            await asyncio.wait(
                [asyncio.ensure_future(source.changed.wait()), ended],
                return_when=asyncio.FIRST_COMPLETED,
            )
        if ended.done():  # over the budget while growing: a resumable error event
            assert parse(ended.result()).events[-1].data["code"] == "SERVICE_UNAVAILABLE"
        else:
            open_streams.append((resp, ended))
        assert history.memory_bytes <= budget
    assert refused is not None, "the budget never refused a stream"
    assert (await refused.json())["code"] == "SERVICE_UNAVAILABLE"
    assert int(refused.headers["Retry-After"]) >= 1
    assert history.memory_bytes >= budget * ADMIT_SHARE  # refused: the budget was full
    source.release.set()
    for _, ended in open_streams:  # the rest of each history: complete, unless growing
        last = parse(await ended).events[-1]  # it passed the budget (resumable, then)
        assert last.name == "complete" or (
            last.data["code"] == "SERVICE_UNAVAILABLE" and last.data["last_event_id"]
        )
        assert history.memory_bytes <= budget
    key, _ = await store.create("after", ("stream",), None)
    again = await client.get(STREAM.format(WALLET), headers={"X-API-Key": key})
    assert again.status == 200  # idle histories give their memory back to new streams
    assert parse(await again.read()).names[-1] == "complete"
