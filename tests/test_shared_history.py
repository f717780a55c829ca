"""Finished histories shared through a real Redis: one upstream fetch for every process."""

from __future__ import annotations

import pytest

from tests.fake_helius import FakeHelius
from tests.redis_server import free_port
from tests.sse_client import parse
from tests.support import WALLET
from walletd.appkeys import HISTORY
from walletd.upstream.demo import LARGE_DEMO_WALLET

STREAM = "/v4/wallet/{}/stream"


@pytest.fixture
async def upstream(aiohttp_server, redis_url, redis_prefix):
    fake = FakeHelius(synthetic={WALLET: None, LARGE_DEMO_WALLET: 1500})
    server = await aiohttp_server(fake.app())
    env = fake.walletd_env(
        server, REDIS_URL=redis_url, REDIS_PREFIX=redis_prefix, SECRET_KEY="k" * 32
    )
    fake.env = env  # type: ignore[attr-defined]
    return fake


async def stream_of(client, wallet=WALLET, **query):
    """The whole stream, once the server has also finished sharing what it fetched."""
    resp = await client.get(STREAM.format(wallet), params=query)
    stream = parse(await resp.read())
    await client.server.app[HISTORY].settle()
    return stream


async def test_a_second_process_streams_a_finished_history_without_upstream_calls(serve, upstream):
    first = await serve(**upstream.env)
    original = await stream_of(first, LARGE_DEMO_WALLET)
    assert original.events[-1].name == "complete"
    calls = len(upstream.log)
    assert calls > 0
    other = await serve(**upstream.env, SSE_BATCH_SIZE=7)  # another process, other framing
    again = await stream_of(other, LARGE_DEMO_WALLET)
    assert len(upstream.log) == calls
    assert again.trades == original.trades
    summary, original_summary = again.events[-1].data, original.events[-1].data
    summary.pop("duration_s"), original_summary.pop("duration_s")
    assert summary == original_summary  # counts, summary
    assert max(len(e.data["trades"]) for e in again.events if e.name == "trades") == 7


async def test_a_history_cut_short_is_not_shared(serve, upstream):
    first = await serve(**upstream.env)
    await stream_of(first, LARGE_DEMO_WALLET, limit=5)
    calls = len(upstream.log)
    other = await serve(**upstream.env)
    full = await stream_of(other, LARGE_DEMO_WALLET)
    assert full.events[-1].name == "complete"
    assert len(upstream.log) > calls  # fetched, not served a partial history


async def test_an_unreadable_entry_is_a_miss(serve, upstream, redis_client, redis_prefix):
    await redis_client.set(f"{redis_prefix}history:2:{WALLET}:-", b"not zlib")
    client = await serve(**upstream.env)
    stream = await stream_of(client)
    assert stream.events[-1].name == "complete" and stream.trades
    assert upstream.calls("rpc")
    # ...and the good history replaced it.
    other = await serve(**upstream.env)
    calls = len(upstream.log)
    assert (await stream_of(other)).trades == stream.trades
    assert len(upstream.log) == calls


async def test_an_unreachable_redis_only_costs_the_sharing(serve, upstream, caplog):
    env = {**upstream.env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    client = await serve(**env)
    stream = await stream_of(client)
    assert stream.events[-1].name == "complete" and stream.trades
    assert any(r.getMessage() == "history_cache_unreachable" for r in caplog.records)
    assert "redis://" not in caplog.text


async def test_without_a_secret_key_histories_are_not_shared(serve, upstream):
    env = {**upstream.env}
    del env["SECRET_KEY"]
    first = await serve(**env)
    await stream_of(first)
    calls = len(upstream.log)
    await stream_of(await serve(**env))
    assert len(upstream.log) > calls  # nothing unsigned was stored or read
