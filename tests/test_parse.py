"""Parser edge cases beyond the real samples: bounds, identifiers, exact formatting."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest

from tests.support import WALLET
from walletd.trades.model import format_units
from walletd.upstream.demo import DemoSource
from walletd.upstream.helius.reader import parse_transaction


@pytest.fixture
async def swap() -> Mapping[str, Any]:
    async for page in DemoSource().pages(WALLET, None):
        for tx in page.transactions:
            if parse_transaction(tx, WALLET) is not None:
                return tx
    raise AssertionError("no swap in the demo history")


@pytest.mark.parametrize(
    ("raw", "decimals", "text"),
    [
        (1_500_000_000, 9, "1.5"),
        (2_000_000, 6, "2"),
        (5, 9, "0.000000005"),
        (0, 6, "0"),
        (123456789012345678901234567890123, 6, "123456789012345678901234567.890123"),
        (10**40, 0, "1" + "0" * 40),
    ],
)
def test_format_units_is_exact_and_plain(raw, decimals, text):
    assert format_units(raw, decimals) == text


@pytest.mark.parametrize("value", [-1, 2**63, 1.5, True, "x", [], None])
async def test_unusable_slot_and_timestamp_become_null(swap, value):
    tx = copy.deepcopy(swap)
    tx["slot"] = tx["timestamp"] = value
    trade = parse_transaction(tx, WALLET)
    assert trade is not None
    assert (trade.slot, trade.timestamp) == (None, None)


@pytest.mark.parametrize("signature", ["", "\ud800abc", "sigé", 42, None])
async def test_unusable_signature_is_no_trade(swap, signature):
    tx = copy.deepcopy(swap)
    tx["signature"] = signature
    assert parse_transaction(tx, WALLET) is None


async def test_non_ascii_dex_label_is_dropped_not_fatal(swap):
    tx = copy.deepcopy(swap)
    tx["source"] = "RAYDIUM\ud800"
    trade = parse_transaction(tx, WALLET)
    assert trade is not None and trade.dex is None


async def test_parse_ignores_type_and_events(swap):
    baseline = parse_transaction(swap, WALLET)
    tx = copy.deepcopy(swap)
    tx["type"] = "TRANSFER"
    tx["events"] = {"swap": {"nativeInput": {"account": WALLET, "amount": "1"}}}
    assert parse_transaction(tx, WALLET) == baseline
