"""The SSE protocol of SPEC §1, event by event, over real HTTP."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from tests.sse_client import parse
from tests.support import WALLET
from walletd.stream.connection import WalletStream
from walletd.stream.pending import WRITE_BATCH_BYTES
from walletd.trades.solana import WSOL_MINT
from walletd.upstream.demo import EMPTY_DEMO_WALLET, DemoSource
from walletd.upstream.helius.reader import parse_transaction

STREAM = "/v4/wallet/{}/stream"


async def expected_trades(wallet: str) -> tuple[list[dict], int]:
    """The demo history of `wallet` parsed directly: (trade dicts, transactions)."""
    trades, scanned = [], 0
    async for page in DemoSource().pages(wallet, None):
        scanned += len(page.transactions)
        for tx in page.transactions:
            trade = parse_transaction(tx, wallet)
            if trade is not None:
                trades.append(trade.to_dict())
    return trades, scanned


async def test_stream_follows_protocol_event_by_event(serve):
    client = await serve(SSE_BATCH_SIZE=10, SSE_PROGRESS_THROTTLE=0)
    resp = await client.get(STREAM.format(WALLET), headers={"Accept": "text/event-stream"})
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/event-stream"
    assert resp.headers["Cache-Control"] == "no-cache"
    assert resp.headers["X-Accel-Buffering"] == "no"
    assert uuid.UUID(resp.headers["X-Stream-ID"]).version == 4
    assert resp.headers["X-Request-ID"]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    stream = parse(await resp.read())
    want, scanned = await expected_trades(WALLET)

    assert stream.retry == 3000
    connected = stream.events[0]
    assert connected.name == "connected"
    assert connected.data["stream_id"] == resp.headers["X-Stream-ID"]
    assert connected.data["wallet"] == WALLET
    assert connected.data["resumed_from"] is None
    assert isinstance(connected.data["timestamp"], int)
    assert stream.events[-1].name == "complete"
    assert set(stream.names[1:-1]) <= {"progress", "trades"}

    batches = stream.named("trades")
    assert [b.data["batch"] for b in batches] == list(range(1, len(batches) + 1))
    total = 0
    for batch in batches:
        assert 1 <= len(batch.data["trades"]) <= 10
        total += len(batch.data["trades"])
        assert batch.data["total"] == total
        assert batch.id == batch.data["trades"][-1]["signature"]
    assert stream.trades == want

    for progress in stream.named("progress"):
        assert set(progress.data) == {"step", "message", "signatures_scanned", "trades_found"}
    scanned_seen = [p.data["signatures_scanned"] for p in stream.named("progress")]
    assert scanned_seen == sorted(scanned_seen)

    complete = stream.events[-1].data
    assert complete["trades_found"] == len(want)
    assert complete["signatures_scanned"] == scanned
    assert complete["truncated"] is False
    assert complete["duration_s"] >= 0
    summary = complete["summary"]
    assert summary["buys"] == sum(t["action"] == "buy" for t in want)
    assert summary["sells"] == sum(t["action"] == "sell" for t in want)
    assert summary["swaps"] == sum(t["action"] == "swap" for t in want)
    mints = {t[leg]["mint"] for t in want for leg in ("token_in", "token_out")}
    assert summary["unique_tokens"] == len(mints)
    assert summary["first_trade_at"] == min(t["timestamp"] for t in want)
    assert summary["last_trade_at"] == max(t["timestamp"] for t in want)
    volume = sum(
        Decimal(t[leg]["amount"])
        for t in want
        for leg in ("token_in", "token_out")
        if t[leg]["mint"] == WSOL_MINT
    )
    assert Decimal(summary["volume_sol"]) == volume


async def test_stream_trades_are_newest_first_and_unique(serve):
    client = await serve()
    stream = parse(await (await client.get(STREAM.format(WALLET))).read())
    slots = [t["slot"] for t in stream.trades]
    assert slots == sorted(slots, reverse=True)
    signatures = [t["signature"] for t in stream.trades]
    assert len(signatures) == len(set(signatures))


async def test_stream_stops_at_limit_and_says_truncated(serve):
    client = await serve(SSE_BATCH_SIZE=4)
    want, _ = await expected_trades(WALLET)
    resp = await client.get(STREAM.format(WALLET), params={"limit": "9"})
    stream = parse(await resp.read())
    assert stream.trades == want[:9]
    assert [len(b.data["trades"]) for b in stream.named("trades")][-1] >= 1
    complete = stream.events[-1]
    assert complete.name == "complete"
    assert complete.data["trades_found"] == 9
    assert complete.data["truncated"] is True


@pytest.mark.parametrize("extra", [0, 1, 50])
async def test_limit_at_or_past_the_history_is_not_truncated(serve, extra):
    client = await serve()
    want, _ = await expected_trades(WALLET)
    resp = await client.get(STREAM.format(WALLET), params={"limit": str(len(want) + extra)})
    stream = parse(await resp.read())
    assert stream.trades == want
    assert stream.events[-1].data["truncated"] is False


async def test_stream_without_history_ends_with_wallet_not_found(serve):
    client = await serve()
    resp = await client.get(STREAM.format(EMPTY_DEMO_WALLET), headers={"X-Request-ID": "req-42"})
    assert resp.status == 200
    stream = parse(await resp.read())
    assert stream.names == ["connected", "progress", "error"]
    error = stream.events[-1]
    assert error.data["code"] == "WALLET_NOT_FOUND"
    assert error.data["stream_id"] == resp.headers["X-Stream-ID"]
    assert error.data["request_id"] == "req-42"
    assert "last_event_id" not in error.data  # not resumable: nothing to resume


async def test_progress_events_can_be_switched_off(serve):
    client = await serve(FEATURE_PROGRESS_EVENTS="false", SSE_PROGRESS_THROTTLE=0)
    stream = parse(await (await client.get(STREAM.format(WALLET))).read())
    assert stream.named("progress") == []
    assert stream.names[0] == "connected" and stream.names[-1] == "complete"


async def test_progress_is_throttled(serve):
    # With a throttle longer than the whole stream, only the opening progress event is sent.
    client = await serve(SSE_PROGRESS_THROTTLE=60, SSE_BATCH_SIZE=5)
    stream = parse(await (await client.get(STREAM.format(WALLET))).read())
    assert [p.data["step"] for p in stream.named("progress")] == ["fetching"]


async def test_request_id_is_echoed_when_safe_and_replaced_when_not(serve):
    client = await serve()
    resp = await client.get("/health", headers={"X-Request-ID": "abc-123_x.y:z"})
    assert resp.headers["X-Request-ID"] == "abc-123_x.y:z"
    for bad in ("a b", "x" * 129, "<script>", "ü"):
        resp = await client.get("/health", headers={"X-Request-ID": bad})
        assert resp.headers["X-Request-ID"] != bad
        assert len(resp.headers["X-Request-ID"]) == 32


async def test_health_and_ready_answer(serve):
    client = await serve()
    resp = await client.get("/health")
    assert (resp.status, await resp.json()) == (200, {"status": "ok"})
    resp = await client.get("/ready")
    assert (resp.status, await resp.json()) == (200, {"status": "ok", "reasons": []})


async def test_recorded_pages_leave_in_batched_writes_with_the_same_events(serve, monkeypatch):
    # A cached history's frames are queued and written up to WRITE_BATCH_BYTES at a time,
    # every write still through WalletStream._write and counted; the events are the same.
    client = await serve(SSE_BATCH_SIZE=2, SSE_PROGRESS_THROTTLE=60, CACHE_TTL=3600)
    first = parse(await (await client.get(STREAM.format(WALLET))).read())  # records it
    writes: list[tuple[int, int]] = []
    write = WalletStream._write

    async def recorded(self, *parts, size=None, events=1, wait=True):
        writes.append((sum(map(len, parts)), events))
        await write(self, *parts, size=size, events=events, wait=wait)

    monkeypatch.setattr(WalletStream, "_write", recorded)
    again = parse(await (await client.get(STREAM.format(WALLET))).read())
    trades = again.named("trades")
    assert [t.data for t in trades] == [t.data for t in first.named("trades")]
    assert [t.id for t in trades] == [t.id for t in first.named("trades")]
    assert sum(events for _, events in writes) == len(again.events)
    assert len(writes) < len(trades)  # the opening write, the pages, `complete`
    largest = max(size for size, _ in writes)
    assert largest <= WRITE_BATCH_BYTES + max(len(t.data["trades"]) for t in trades) * 2048
