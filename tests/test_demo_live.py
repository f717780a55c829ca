"""The demo source's live trades (SPEC §1): derived from (address, wall-clock tick),
ahead of an unchanged static history, and what `newer` answers."""

from __future__ import annotations

import hashlib

import base58
import pytest

from tests.clocks import FakeClock
from tests.support import WALLET
from walletd.errors import InvalidEventId
from walletd.upstream.demo import EMPTY_DEMO_WALLET, DemoSource, signature_at
from walletd.upstream.demo_live import WINDOW_TICKS, current_tick, phase, tick_signature
from walletd.upstream.helius.reader import parse_transaction

NOW = 1_800_000_000.0
K = current_tick(WALLET, NOW, 10.0)


async def signatures(source: DemoSource, wallet: str, before: str | None = None) -> list[str]:
    return [
        tx["signature"] async for page in source.pages(wallet, before) for tx in page.transactions
    ]


async def test_live_history_is_the_window_ahead_of_the_static_history() -> None:
    live = DemoSource(live_interval_s=10, clock=FakeClock(NOW))
    listed = await signatures(live, WALLET)
    ticks = [tick_signature(WALLET, k, 10.0) for k in range(K, K - WINDOW_TICKS, -1)]
    assert listed[:WINDOW_TICKS] == ticks
    assert listed[WINDOW_TICKS:] == await signatures(DemoSource(), WALLET)
    assert await signatures(live, EMPTY_DEMO_WALLET) == []


async def test_every_tick_is_a_trade_and_the_same_on_every_instance() -> None:
    landed = (K + phase(WALLET)) * 10  # when tick K landed: two clocks within it
    one = DemoSource(live_interval_s=10, clock=FakeClock(landed + 1))
    two = DemoSource(live_interval_s=10, clock=FakeClock(landed + 8))
    first = [tx async for page in one.pages(WALLET, None) for tx in page.transactions][:20]
    second = [tx async for page in two.pages(WALLET, None) for tx in page.transactions][:20]
    assert first == second
    assert all(parse_transaction(tx, WALLET) is not None for tx in first)


@pytest.mark.parametrize("seed", range(5))
async def test_every_tick_of_the_window_is_a_trade(seed: int) -> None:
    """A token swapped for itself would net to nothing (it did, about one tick in 100)."""
    wallet = base58.b58encode(hashlib.sha256(b"live wallet %d" % seed).digest()).decode()
    source = DemoSource(live_interval_s=10, clock=FakeClock(NOW))
    window = [tx async for page in source.pages(wallet, None) for tx in page.transactions]
    ticks = window[:WINDOW_TICKS]
    assert [tx["signature"] for tx in ticks if parse_transaction(tx, wallet) is None] == []


async def test_newer_answers_the_ticks_after_a_cursor() -> None:
    clock = FakeClock(NOW)
    source = DemoSource(live_interval_s=10, clock=clock)
    head = tick_signature(WALLET, K, 10.0)
    assert await source.newer(WALLET, head) == []
    clock.advance(30)
    pages = await source.newer(WALLET, head)
    assert [tx["signature"] for tx in pages[0].transactions] == [
        tick_signature(WALLET, k, 10.0) for k in (K + 3, K + 2, K + 1)
    ]
    # A static signature, or a tick older than the window: the whole window.
    static = await source.newer(WALLET, signature_at(WALLET, 0))
    assert len(static[0].transactions) == WINDOW_TICKS
    old = await source.newer(WALLET, tick_signature(WALLET, K - 5000, 10.0))
    assert len(old[0].transactions) == WINDOW_TICKS
    # Older than the window, it still resumes the history: the static part.
    assert await signatures(source, WALLET, tick_signature(WALLET, K - 5000, 10.0)) == (
        await signatures(DemoSource(), WALLET)
    )
    for unknown in (signature_at(EMPTY_DEMO_WALLET, 0), tick_signature(WALLET, K + 99, 10.0)):
        with pytest.raises(InvalidEventId):
            await source.newer(WALLET, unknown)
