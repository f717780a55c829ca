"""The embedded demo source: deterministic, sized by address, in Helius's shapes."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from typing import Any

import base58
import pytest

from tests.support import WALLET
from walletd.errors import InvalidEventId
from walletd.trades.solana import USDC_MINT, USDT_MINT, is_signature
from walletd.upstream.demo import (
    EMPTY_DEMO_WALLET,
    LARGE_DEMO_WALLET,
    DemoSource,
    history_size,
    signature_at,
)
from walletd.upstream.helius.reader import parse_transaction


def addresses(count: int) -> list[str]:
    return [base58.b58encode(hashlib.sha256(b"a%d" % i).digest()).decode() for i in range(count)]


async def collect(
    source: DemoSource, wallet: str, before: str | None = None
) -> list[Mapping[str, Any]]:
    return [tx async for page in source.pages(wallet, before) for tx in page.transactions]


def test_documented_wallets_have_the_documented_sizes():
    assert history_size(LARGE_DEMO_WALLET) >= 20_000
    assert history_size(EMPTY_DEMO_WALLET) == 0
    assert history_size(WALLET) == 111


def test_about_one_address_in_sixteen_has_no_history():
    sizes = [history_size(a) for a in addresses(4000)]
    empty = sizes.count(0) / len(sizes)
    assert 1 / 16 - 0.02 < empty < 1 / 16 + 0.02
    assert max(sizes) < 30_000


async def test_history_is_deterministic_across_sources():
    first, second = (
        await collect(DemoSource(), WALLET),
        await collect(DemoSource(page_size=7), WALLET),
    )
    assert first == second
    assert len(first) == history_size(WALLET)


async def test_empty_wallet_yields_no_pages():
    assert [p async for p in DemoSource().pages(EMPTY_DEMO_WALLET, None)] == []


async def test_pages_are_newest_first_with_cursors_that_resume():
    source = DemoSource(page_size=10)
    pages = [p async for p in source.pages(WALLET, None)]
    slots = [tx["slot"] for p in pages for tx in p.transactions]
    assert slots == sorted(slots, reverse=True)
    for page in pages:
        assert page.cursor == page.transactions[-1]["signature"]
        assert page.cursor is not None and is_signature(page.cursor)
    rest = await collect(source, WALLET, pages[2].cursor)
    assert rest == [tx for p in pages[3:] for tx in p.transactions]


async def test_unknown_cursor_is_invalid_event_id():
    cursor = signature_at(LARGE_DEMO_WALLET, 0)  # a real cursor, of another wallet
    with pytest.raises(InvalidEventId):
        await collect(DemoSource(), WALLET, cursor)


async def test_history_mixes_trades_and_traps_through_the_real_parser():
    txs = await collect(DemoSource(), WALLET)
    trades = [parse_transaction(tx, WALLET) for tx in txs]
    swaps = [tx for tx, t in zip(txs, trades, strict=True) if t is not None]
    assert 0.3 < len(swaps) / len(txs) < 0.8
    assert {t.action for t in trades if t} == {"buy", "sell", "swap"}
    # Traps the parser must see through are present: mislabelled swaps, failures, dust, NFTs.
    assert any(tx["type"] != "SWAP" for tx in swaps)
    failed = [tx for tx in txs if tx["transactionError"] is not None]
    assert failed and all(parse_transaction(tx, WALLET) is None for tx in failed)
    assert any(tx["type"] == "TRANSFER" and tx["feePayer"] != WALLET for tx in txs)
    assert any(tx["type"] == "NFT_SALE" for tx in txs)
    assert all(parse_transaction(tx, WALLET) is None for tx in txs if tx["type"] == "NFT_SALE")


async def test_history_trades_usdt_in_every_action_shape():
    """USDT is bought with, sold for, and swapped against USDC both ways, and the trades
    name it: the demo's mint is the one the trade model knows."""
    wallet = "5K8gEY3RY57NMj9LKCs7sqgkes1krP5VUJPMoLLPELKd"  # 600 transactions
    txs = await collect(DemoSource(), wallet)
    trades = [t.to_dict() for t in map(parse_transaction, txs, [wallet] * len(txs)) if t]
    quotes = {USDC_MINT: "USDC", USDT_MINT: "USDT"}

    def shape(trade: dict) -> tuple[str, str, str]:
        gave, got = trade["token_in"], trade["token_out"]
        assert gave["symbol"] == quotes.get(gave["mint"]) and got["symbol"] == quotes.get(
            got["mint"]
        )
        return trade["action"], gave["symbol"] or "token", got["symbol"] or "token"

    shapes = {
        shape(t) for t in trades if USDT_MINT in (t["token_in"]["mint"], t["token_out"]["mint"])
    }
    assert shapes == {
        ("buy", "USDT", "token"),
        ("sell", "token", "USDT"),
        ("swap", "USDC", "USDT"),
        ("swap", "USDT", "USDC"),
    }


async def test_latency_setting_delays_each_page():
    source = DemoSource(latency_s=0.05, page_size=50)
    started = time.monotonic()
    pages = [p async for p in source.pages(WALLET, None)]
    assert time.monotonic() - started >= 0.05 * len(pages)
