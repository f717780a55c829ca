"""Demo transactions converted to RPC results give the same trade as the Helius reader."""

from __future__ import annotations

import pytest

from tests.fake_helius import synthetic_transactions
from tests.rpc_shapes import to_rpc
from walletd.upstream.helius.reader import parse_transaction
from walletd.upstream.rpc.reader import parse_rpc_transaction

# Demo wallets of several sizes (the one of conftest.WALLET has 111 transactions).
WALLETS = [
    "3JoVBiQEA2QKsq7TzW5ez5jVRtbbYgTNijoZzp5qgkr2",
    "CKs1E69a2e9TmH4mKKLrXFF8kD3ZnwKjoEuXa6sz9WqX",
    "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM",
    "5Q544fKrFoe6tsEbD7S8EmxGTJYAKtTVhAW5Q5pge4j1",
]


@pytest.mark.parametrize("wallet", WALLETS)
def test_converted_demo_history_gives_the_same_trades(wallet: str) -> None:
    txs = synthetic_transactions(wallet, 400)
    trades = 0
    for tx in txs:
        expected = parse_transaction(tx, wallet)
        assert parse_rpc_transaction(to_rpc(tx), wallet) == expected, tx["signature"]
        trades += expected is not None
    assert trades > 100  # the comparison covered real trades, not only Nones


def test_converted_failed_swap_moves_only_the_fee() -> None:
    wallet = WALLETS[0]
    failed = [t for t in synthetic_transactions(wallet, 400) if t["transactionError"]]
    assert failed
    rpc = to_rpc(failed[0])
    meta = rpc["meta"]
    assert meta["err"] == failed[0]["transactionError"]
    assert meta["preBalances"][0] - meta["postBalances"][0] == failed[0]["fee"]
    assert meta["preTokenBalances"] == meta["postTokenBalances"]


def test_records_without_account_data_are_refused() -> None:
    with pytest.raises(ValueError):
        to_rpc({"signature": "x", "feePayer": "y", "fee": 5000, "accountData": []})
