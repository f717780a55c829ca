"""HistoryCache and Recording: shared fetches, TTL, bounds, failures, cancellation."""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest

from tests.fakes import ListSource, demo_pages
from tests.sse_client import parse
from tests.support import WALLET
from walletd.errors import DataFetchError
from walletd.upstream.helius.reader import parse_transaction
from walletd.upstream.history import HistoryCache


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def pages():
    return await demo_pages(WALLET, page_size=20)


async def read_all(cache: HistoryCache, wallet: str = WALLET, before: str | None = None) -> list:
    out = []
    async with cache.open(wallet, before) as recording:
        index = 0
        while (page := await recording.page(index)) is not None:
            out.append(page)
            index += 1
    return out


async def test_finished_history_is_served_from_cache_until_ttl(pages):
    source, clock = ListSource.from_pages(pages), FakeClock()
    cache = HistoryCache(source, ttl_s=60, max_trades=10**6, clock=clock)
    first = await read_all(cache)
    clock.now += 59
    assert await read_all(cache) == first
    assert len(source.calls) == 1
    clock.now += 61
    await read_all(cache)
    assert len(source.calls) == 2
    await cache.close()


async def test_cache_is_bounded_by_trades(pages):
    source = ListSource.from_pages(pages)
    cache = HistoryCache(source, ttl_s=3600, max_trades=1, clock=FakeClock())
    await read_all(cache)
    await read_all(cache)  # the first recording was over the bound once unused
    assert len(source.calls) == 2
    assert len(cache) <= 1
    await cache.close()


async def test_trades_are_encoded_once_and_unique_per_signature(pages):
    duplicated = [pages[0].transactions, pages[0].transactions, pages[1].transactions]
    cache = HistoryCache(ListSource(duplicated), ttl_s=60, max_trades=10**6)
    scanned = await read_all(cache)
    signatures = [sig for p in scanned for sig in p.signatures]
    assert len(signatures) == len(set(signatures))
    assert len(scanned[1]) == 0  # the repeated page adds nothing
    assert scanned[1].scanned == len(pages[0].transactions)
    await cache.close()


async def test_failure_reaches_every_reader_and_is_not_cached(pages):
    gate = asyncio.Event()
    source = ListSource.from_pages(pages, gates={0: gate}, fail_at={0: DataFetchError("boom")})
    cache = HistoryCache(source, ttl_s=60, max_trades=10**6)
    readers = [asyncio.create_task(read_all(cache)) for _ in range(3)]
    await source.waiting.wait()
    gate.set()
    results = await asyncio.gather(*readers, return_exceptions=True)
    assert all(isinstance(r, DataFetchError) for r in results)
    assert len(source.calls) == 1
    source.fail_at.clear()
    assert await read_all(cache)
    assert len(source.calls) == 2
    await cache.close()


async def test_cancelled_reader_does_not_cancel_the_shared_fetch(pages):
    gate = asyncio.Event()
    source = ListSource.from_pages(pages, gates={0: gate})
    cache = HistoryCache(source, ttl_s=60, max_trades=10**6)
    leaving = asyncio.create_task(read_all(cache))
    staying = asyncio.create_task(read_all(cache))
    await source.waiting.wait()
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    gate.set()
    assert len(await staying) == len(pages)
    assert source.served == len(pages)
    await cache.close()


async def test_close_cancels_a_fetch_nobody_waits_for(pages):
    source = ListSource.from_pages(pages, gates={0: asyncio.Event()})  # never opens
    cache = HistoryCache(source, ttl_s=60, max_trades=10**6)
    reader = asyncio.create_task(read_all(cache))
    await source.waiting.wait()
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    await asyncio.wait_for(cache.close(), 5)
    assert len(cache) == 0
    assert [t for t in asyncio.all_tasks() if t.get_name() == "history-fetch"] == []


class Exploding(dict):
    """A transaction whose every read fails in a way the parser does not expect."""

    def get(self, key, default=None):
        raise RuntimeError("boom")


async def test_a_page_that_fails_to_scan_fails_the_recording_instead_of_a_gap(pages):
    broken = [pages[0].transactions, [Exploding()], pages[2].transactions]
    source = ListSource(broken)
    cache = HistoryCache(source, ttl_s=60, max_trades=10**6)
    for _ in range(2):  # never a shorter history served from the cache afterwards
        with pytest.raises(RuntimeError):
            await read_all(cache)
    assert len(source.calls) == 2
    await cache.close()


@pytest.mark.parametrize("batch_size", [1, 7, 100])
async def test_pages_carry_the_frames_every_stream_sends(pages, batch_size):
    source = ListSource.from_pages(pages)
    cache = HistoryCache(source, ttl_s=60, max_trades=10**6, batch_size=batch_size)
    scanned = await read_all(cache)
    events = parse(b"".join(frame for page in scanned for frame in page.frames)).events
    trades = [t for e in events for t in e.data["trades"]]
    want = [
        t.to_dict()
        for p in pages
        for tx in p.transactions
        if (t := parse_transaction(tx, WALLET)) is not None
    ]
    assert trades == want
    assert [e.data["batch"] for e in events] == list(range(1, len(events) + 1))
    assert [e.data["total"] for e in events] == list(
        itertools.accumulate(len(e.data["trades"]) for e in events)
    )
    for page in scanned:
        for i in range(len(page)):  # every slice of a batch is that batch's objects
            batch = i // batch_size
            start = batch * batch_size
            objects = json.loads(b"[" + bytes(page.body(start, i + 1)) + b"]")
            assert [o["signature"] for o in objects] == list(page.signatures[start : i + 1])
    await cache.close()


async def test_sweep_drops_expired_histories(pages):
    source, clock = ListSource.from_pages(pages), FakeClock()
    cache = HistoryCache(source, ttl_s=10, max_trades=10**6, clock=clock)
    await read_all(cache)
    cache.sweep()
    assert len(cache) == 1
    clock.now += 11
    cache.sweep()
    assert len(cache) == 0
    await cache.close()


async def test_close_before_the_fetch_starts_still_answers_the_reader(pages):
    from walletd.errors import ServiceUnavailable
    from walletd.upstream.recording import Recording

    recording = Recording(ListSource.from_pages(pages).pages(WALLET, None), WALLET, 0.0, 100)
    reader = asyncio.create_task(recording.page(0))
    await asyncio.sleep(0)  # the reader has created the fetch task, which has not run yet
    await recording.close()
    with pytest.raises(ServiceUnavailable):
        await asyncio.wait_for(reader, 5)
    with pytest.raises(ServiceUnavailable):
        await asyncio.wait_for(recording.page(0), 5)


async def test_trades_held_are_the_sum_of_the_recordings_through_evictions(pages):
    """The running total (no sum per stream) agrees with the recordings at every step:
    reads, a stale one replaced, eviction over the bound, a sweep."""
    source, clock = ListSource.from_pages(pages), FakeClock()
    # Four histories: the whole one and three from cursors inside it.
    signatures = [tx["signature"] for page in pages for tx in page.transactions]
    a, b, c, d = (None, *signatures[1:4])
    sizes = {}
    for cursor in (a, b, c, d):
        alone = HistoryCache(ListSource.from_pages(pages), ttl_s=60, max_trades=10**6)
        sizes[cursor] = sum(len(p) for p in await read_all(alone, before=cursor))
    assert all(sizes.values())
    cache = HistoryCache(source, ttl_s=10, max_trades=sizes[a] + sizes[b] + sizes[c], clock=clock)

    def held() -> int:
        assert cache.trade_count == sum(r.trade_count for r in cache._recordings.values())
        return cache.trade_count

    for cursor in (a, b, c):
        await read_all(cache, before=cursor)
    assert (len(cache), held()) == (3, sizes[a] + sizes[b] + sizes[c])
    clock.now += 5
    await read_all(cache, before=a)  # fresh: served from the cache
    clock.now += 6  # b and c are stale now, a is not
    await read_all(cache, before=b)  # refetched; c waits for the sweep
    assert len(source.calls) == 4 and len(cache) == 3
    assert held() == sizes[a] + sizes[b] + sizes[c]
    await read_all(cache, before=d)  # over the bound: the oldest idle one, c, goes
    assert len(cache) == 3 and held() == sizes[a] + sizes[b] + sizes[d]
    clock.now += 11
    cache.sweep()
    assert (len(cache), held()) == (0, 0)
    await cache.close()
