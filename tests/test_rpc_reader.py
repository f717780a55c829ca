"""The RPC reader on real mainnet transactions (tests/data/rpc): trades derived by hand."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import base58
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from walletd.trades.solana import USDC_MINT, WSOL_MINT
from walletd.upstream.rpc.message import MessageError, _Reader, decode_transaction
from walletd.upstream.rpc.reader import (
    DEX_PROGRAMS,
    dex_of,
    parse_rpc_transaction,
    read_rpc_transaction,
)

DATA = Path(__file__).parent / "data" / "rpc"
JOWENCY = "jowency-me-solana-tx-parser"
# The USDT mint as the samples hold it (SPEC §1 names the same one).
USDT = "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB"


def load(name: str) -> dict[str, Any]:
    """The getTransaction result of a sample, out of its wrapper (jowency `raw`, RPC `result`)."""
    data = json.loads((DATA / name).read_text(encoding="utf-8"))
    for key in ("raw", "result"):
        if key in data:
            return data[key]
    return data


def all_samples() -> list[str]:
    return sorted(str(p.relative_to(DATA)) for p in DATA.rglob("*.json"))


def fee_payer(tx: dict[str, Any]) -> str:
    transaction = tx["transaction"]
    if isinstance(transaction, list):
        return decode_transaction(base64.b64decode(transaction[0])).account_keys[0]
    key = transaction["message"]["accountKeys"][0]
    return key["pubkey"] if isinstance(key, dict) else key


def invoked_programs(tx: dict[str, Any]) -> set[str]:
    """Program ids of outer and inner instructions, read independently of the reader."""
    meta, transaction = tx["meta"], tx["transaction"]
    loaded = meta.get("loadedAddresses") or {"writable": [], "readonly": []}
    if isinstance(transaction, list):
        decoded = decode_transaction(base64.b64decode(transaction[0]))
        keys = decoded.account_keys + loaded["writable"] + loaded["readonly"]
        out = {keys[i] for i in decoded.program_indexes}
    else:
        keys = [k["pubkey"] for k in transaction["message"]["accountKeys"]]
        out = {i["programId"] for i in transaction["message"]["instructions"]}
    for group in meta.get("innerInstructions") or []:
        for ins in group["instructions"]:
            out.add(ins["programId"] if "programId" in ins else keys[ins["programIdIndex"]])
    return out


# --- real swaps, derived by hand -----------------------------------------------------------

# (file, wallet, action, (mint, amount) given, (mint, amount) received, fee_sol, dex)
SWAPS = [
    # jsonParsed, pump.fun buy. SOL: wallet 13896257 -> 8027757 = -5868500; its new token
    # account #8 0 -> 2039280 (rent it paid, nets out) -> -3829220; fee 25000 back ->
    # -3804220. Token 63XVR6..pump: no pre entry (0) -> 134031426910, 6 decimals.
    (
        "rubberarchind-solana-txn-parser__pumpfun_parsed-buy-txn.json",
        "CBFCFmju7azw3pDHXWre24PjvDVrYwDdfgiKejmvJJqj",
        "buy",
        (WSOL_MINT, "0.00380422"),
        ("63XVR6bgnKN8Mpt6iavzQH5Z2ig5EGd4sHvrGFuBpump", "134031.42691"),
        "0.000025",
        "PUMP_FUN",
    ),
    # jsonParsed, Raydium v4 swap-base-out, a sell. SOL: 5579188077 -> 5581224451 =
    # +2036374; token account #13 closed 2039280 -> 0 (rent back to the wallet, nets out)
    # -> -2906; fee 45000 back -> +42094. Token 9Zw3CR..pump: 10123879371073 -> no post
    # entry (0), 9 decimals.
    (
        "rubberarchind-solana-txn-parser__raydium_parsed-swap-base-out-txn.json",
        "CaShxDq2Vbdp2XryjDdUZthbTzwYsvKuH6Knn9pPi4xU",
        "sell",
        ("9Zw3CR7NPD6hXNk5PZYpYKsvWv9puwr1eEaPxXRapump", "10123.879371073"),
        (WSOL_MINT, "0.000042094"),
        "0.000045",
        "RAYDIUM",
    ),
    # jsonParsed getTransaction response, Jupiter v6 route (whirlpool inside). SOL:
    # 2071993402 -> 1571588402 = -500405000; USDC account #11 lamports unchanged; fee
    # 5000 back -> -500400000. USDC 76652740 -> 153265326 = +76612586.
    (
        "jupag-instruction-parser__tx-2kai9Wa4rc433U3Js.json",
        "Ex2F9oJN9UjBnSy273ezWH2kwaAzKTkm4ZmpDuqwzevY",
        "sell",
        (WSOL_MINT, "0.5004"),
        (USDC_MINT, "76.612586"),
        "0.000005",
        "JUPITER",
    ),
    # jsonParsed, a Jupiter route through Raydium v4: the aggregator names it. SOL:
    # 12812517 -> 6956219 = -5856298; token account #3 unchanged; fee 167341 back ->
    # -5688957. Token 4qu5jP..pump 0 -> 218950493678.
    (
        "rubberarchind-solana-txn-parser__raydium_swap-edge-2.json",
        "DrwVJ3y1aAw3PuRJDdFcMe4rLNbFBaFZwkgX3R3Hb51Z",
        "buy",
        (WSOL_MINT, "0.005688957"),
        ("4qu5jPY7dDkmtB6Q4iECFyWjaESTfwiAK86g99yPpump", "218950.493678"),
        "0.000167341",
        "JUPITER",
    ),
    # base64 v0, PumpSwap buy. SOL: 74546198911 -> 59606226439 = -14939972472; fee 15000
    # back -> -14939957472. Token 2Dg6nR: 6878995485834 -> 11684877047927 = +4805881562093.
    (
        f"{JOWENCY}/swap_pumpswap_1.json",
        "35f43Y1q1EQuKPrDSN4KCuFCdR3oV8ahC4LxyRLYumsA",
        "buy",
        (WSOL_MINT, "14.939957472"),
        ("2Dg6nRk3m9QfFS7TvLwgkfzTbzfbyErHt2aXym1Z8Gxy", "4805881.562093"),
        "0.000015",
        "PUMP_AMM",
    ),
    # base64 v0, Meteora DAMM v2 buy. SOL: 2607644128 -> 1970312605 = -637331523; fee
    # 5151 back -> -637326372. Token F9F3bK: 1751127 -> 6730449122057 = +6730447370930.
    (
        f"{JOWENCY}/swap_meteora_damm_v2_1.json",
        "HGvWwk2to7MrrSsihsHh6vRTaFVUYq8Y1JcyXU1rdqNw",
        "buy",
        (WSOL_MINT, "0.637326372"),
        ("F9F3bKpvdaXgTYW43gvVcY6X5ds3yCGvyXfNdFQ76ZkJ", "6730447.37093"),
        "0.000005151",
        "METEORA",
    ),
    # base64 v0, OKX router, USDC -> token. USDC 118088303 -> 114336931 = -3751372; token
    # ACtfUW..pump 48147668008 -> 49143247525 = +995579517. SOL: -205240 + fee 5240 =
    # -200000, a second (router fee) leg: the higher-ranked USDC is the side reported.
    (
        f"{JOWENCY}/swap_okx_dex_1.json",
        "3VM82rP993eArmKGY1J3dxZctHqmSndvuvw7Mzto67Kn",
        "buy",
        (USDC_MINT, "3.751372"),
        ("ACtfUWtgvaXrQGNMiohTusi5jcx5RJf5zwu9aAxkpump", "995.579517"),
        "0.00000524",
        "OKX_DEX_ROUTER",
    ),
    # base64 v0, Raydium CPMM sell. SOL: 16864190 -> 22526416 = +5662226; fee 5000 back
    # -> +5667226. Token 92Wc1q: 2806705844923555 -> 2782566119826130 = -24139725097425.
    (
        f"{JOWENCY}/swap_raydium_cpmm_1.json",
        "9Xi8kDLnfd8nWHXHWV7crFe1FmYR1uQtEnsHHPqXDU23",
        "sell",
        ("92Wc1qXtTYoLLVqYZL53Py5dh2gjUPG4o3qd4fcmNrSE", "24139.725097425"),
        (WSOL_MINT, "0.005667226"),
        "0.000005",
        "RAYDIUM",
    ),
]


@pytest.mark.parametrize(
    ("name", "wallet", "action", "gave", "got", "fee_sol", "dex"),
    SWAPS,
    ids=[s[0].rsplit("/", 1)[-1] for s in SWAPS],
)
def test_real_swap_gives_the_hand_derived_trade(
    name: str,
    wallet: str,
    action: str,
    gave: tuple[str, str],
    got: tuple[str, str],
    fee_sol: str,
    dex: str,
) -> None:
    tx = load(name)
    trade = parse_rpc_transaction(tx, wallet)
    assert trade is not None
    out = trade.to_dict()
    assert out["action"] == action
    assert (out["token_in"]["mint"], out["token_in"]["amount"]) == gave
    assert (out["token_out"]["mint"], out["token_out"]["amount"]) == got
    assert out["fee_sol"] == fee_sol
    assert out["dex"] == dex
    assert out["slot"] == tx["slot"] and out["timestamp"] == tx.get("blockTime")


def test_usdt_for_usdc_amounts_from_balances() -> None:
    # base64 getBlock entry (no blockTime). USDT 63669587 -> 87 = -63669500; USDC
    # 538175640 -> 601877411 = +63701771; SOL -6130 + fee 5030 = -1100: dust, no leg.
    trade = parse_rpc_transaction(
        load(f"{JOWENCY}/jupiter_route_21.json"), "6VJKr7xymu2VgXQkkShPbuTTCj9UFXx6VmJqvHa33uXQ"
    )
    assert trade is not None
    out = trade.to_dict()
    assert (out["token_in"]["mint"], out["token_in"]["amount"]) == (USDT, "63.6695")
    assert (out["token_out"]["mint"], out["token_out"]["amount"]) == (USDC_MINT, "63.701771")
    assert (out["fee_sol"], out["dex"], out["timestamp"]) == ("0.00000503", "JUPITER", None)


def test_usdt_for_usdc_is_a_swap_between_equal_quotes() -> None:
    trade = parse_rpc_transaction(
        load(f"{JOWENCY}/jupiter_route_21.json"), "6VJKr7xymu2VgXQkkShPbuTTCj9UFXx6VmJqvHa33uXQ"
    )
    assert trade is not None and trade.action == "swap"
    assert trade.to_dict()["token_in"]["symbol"] == "USDT"


def test_wallet_that_is_not_the_fee_payer_pays_no_fee() -> None:
    # The pump.fun buyer's token account is account #8; ask as the pool's vault owner
    # instead: nothing of it changes, so no trade, and a non-payer never gets fee_paid.
    tx = load("rubberarchind-solana-txn-parser__pumpfun_parsed-buy-txn.json")
    other = tx["transaction"]["message"]["accountKeys"][1]["pubkey"]
    changes = read_rpc_transaction(tx, other)
    assert changes is not None and changes.fee_paid is None


# --- non-swaps -------------------------------------------------------------------------------

NOT_TRADES = [
    f"{JOWENCY}/stake_Initialize_1.json",
    f"{JOWENCY}/stake_delegate_1.json",
    f"{JOWENCY}/stake_unstake_1.json",
    f"{JOWENCY}/stake_withdraw_1.json",
    f"{JOWENCY}/transfer_self_1.json",
    f"{JOWENCY}/create_token_pumpfun_1.json",
    "rubberarchind-solana-txn-parser__pumpfun_parsed-create-txn.json",
    f"{JOWENCY}/bridge_wormhole_1.json",
    f"{JOWENCY}/migrate_pumpfun_1.json",
    f"{JOWENCY}/swap_kamino_lending_1.json",
]
FAILED_SWAPS = [
    f"{JOWENCY}/jupiter_route_frlmh_1.json",
    f"{JOWENCY}/jupiter_route_nina_1.json",
    f"{JOWENCY}/swap_meteora_dlmm_1.json",
    f"{JOWENCY}/swap_solfi_1.json",
    f"{JOWENCY}/swap_humidifi_1.json",
    f"{JOWENCY}/swap_lifinity_1.json",
]


@pytest.mark.parametrize("name", NOT_TRADES)
def test_non_swap_is_no_trade(name: str) -> None:
    tx = load(name)
    changes = read_rpc_transaction(tx, fee_payer(tx))
    assert changes is not None  # read fine: it is the ledger that finds no trade
    assert parse_rpc_transaction(tx, fee_payer(tx)) is None


@pytest.mark.parametrize("name", FAILED_SWAPS)
def test_failed_swap_is_no_trade(name: str) -> None:
    tx = load(name)
    assert tx["meta"]["err"] is not None
    assert read_rpc_transaction(tx, fee_payer(tx)) is None
    assert parse_rpc_transaction(tx, fee_payer(tx)) is None


def test_failed_swap_that_would_trade_is_none() -> None:
    tx = copy.deepcopy(load(f"{JOWENCY}/swap_pumpswap_1.json"))
    wallet = "35f43Y1q1EQuKPrDSN4KCuFCdR3oV8ahC4LxyRLYumsA"
    assert parse_rpc_transaction(tx, wallet) is not None
    tx["meta"]["err"] = {"InstructionError": [3, {"Custom": 6001}]}
    assert parse_rpc_transaction(tx, wallet) is None


# --- untrusted input -----------------------------------------------------------------------


def test_bad_signature_is_skipped() -> None:
    tx = copy.deepcopy(load("rubberarchind-solana-txn-parser__pumpfun_parsed-buy-txn.json"))
    wallet = "CBFCFmju7azw3pDHXWre24PjvDVrYwDdfgiKejmvJJqj"
    tx["transaction"]["signatures"][0] = base58.b58encode(bytes(63)).decode()
    assert read_rpc_transaction(tx, wallet) is None


def test_bad_mint_is_skipped() -> None:
    tx = copy.deepcopy(load("rubberarchind-solana-txn-parser__pumpfun_parsed-buy-txn.json"))
    wallet = "CBFCFmju7azw3pDHXWre24PjvDVrYwDdfgiKejmvJJqj"
    for entry in tx["meta"]["postTokenBalances"]:
        if entry["owner"] == wallet:
            entry["mint"] = "<script>"
    assert read_rpc_transaction(tx, wallet) is None


def test_float_amount_is_never_used() -> None:
    tx = copy.deepcopy(load("rubberarchind-solana-txn-parser__pumpfun_parsed-buy-txn.json"))
    wallet = "CBFCFmju7azw3pDHXWre24PjvDVrYwDdfgiKejmvJJqj"
    for entry in tx["meta"]["postTokenBalances"]:
        if entry["owner"] == wallet:
            entry["uiTokenAmount"]["uiAmount"] = 1e300  # ignored: amount + decimals rule
    trade = parse_rpc_transaction(tx, wallet)
    assert trade is not None and trade.token_out.raw == 134031426910
    for entry in tx["meta"]["postTokenBalances"]:
        if entry["owner"] == wallet:
            entry["uiTokenAmount"]["amount"] = 134031.42691  # a float where a string belongs
    assert parse_rpc_transaction(tx, wallet) is None


def test_balances_not_matching_the_keys_are_skipped() -> None:
    tx = copy.deepcopy(load(f"{JOWENCY}/swap_pumpswap_1.json"))
    tx["meta"]["postBalances"].pop()
    assert read_rpc_transaction(tx, "35f43Y1q1EQuKPrDSN4KCuFCdR3oV8ahC4LxyRLYumsA") is None


def test_invalid_wallet_is_none() -> None:
    tx = load(f"{JOWENCY}/swap_pumpswap_1.json")
    assert read_rpc_transaction(tx, "not a wallet") is None


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=20), inner),
    max_leaves=40,
)
SAMPLE = load(f"{JOWENCY}/swap_pumpswap_1.json")
SAMPLE_PARSED = load("rubberarchind-solana-txn-parser__pumpfun_parsed-buy-txn.json")


@given(JSONISH)
@settings(max_examples=300, deadline=None)
def test_garbage_never_raises(garbage: Any) -> None:
    assert read_rpc_transaction(garbage, "35f43Y1q1EQuKPrDSN4KCuFCdR3oV8ahC4LxyRLYumsA") is None


def _replace(tree: Any, path: list[Any], value: Any) -> Any:
    out = copy.deepcopy(tree)
    node = out
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return out


def _paths(tree: Any, prefix: list[Any]) -> list[list[Any]]:
    paths = [prefix] if prefix else []
    if isinstance(tree, dict):
        for key, value in tree.items():
            paths += _paths(value, [*prefix, key])
    elif isinstance(tree, list):
        for i, value in enumerate(tree[:4]):
            paths += _paths(value, [*prefix, i])
    return paths


PATHS = _paths(SAMPLE, []) + [["parsed", *p] for p in _paths(SAMPLE_PARSED, [])]


@given(st.sampled_from(PATHS), JSONISH)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_real_transaction_with_any_field_replaced_never_raises(path: list[Any], value: Any) -> None:
    tree = SAMPLE_PARSED if path[0] == "parsed" else SAMPLE
    path = path[1:] if path[0] == "parsed" else path
    for wallet in ("35f43Y1q1EQuKPrDSN4KCuFCdR3oV8ahC4LxyRLYumsA", fee_payer(SAMPLE_PARSED)):
        parse_rpc_transaction(_replace(tree, path, value), wallet)  # must not raise


@given(st.binary(max_size=400))
@settings(max_examples=300, deadline=None)
def test_decoder_raises_only_message_error(data: bytes) -> None:
    try:
        decode_transaction(data)
    except MessageError:
        pass


BASE64_SAMPLES = [n for n in all_samples() if isinstance(load(n)["transaction"], list)]


@pytest.mark.parametrize("name", BASE64_SAMPLES)
def test_decoder_reads_every_base64_sample(name: str) -> None:
    tx = load(name)
    decoded = decode_transaction(base64.b64decode(tx["transaction"][0]))
    assert decoded.version == (None if tx["version"] == "legacy" else tx["version"])
    loaded = tx["meta"].get("loadedAddresses") or {"writable": [], "readonly": []}
    keys = decoded.account_keys + loaded["writable"] + loaded["readonly"]
    assert len(keys) == len(tx["meta"]["preBalances"])
    wrapper = json.loads((DATA / name).read_text(encoding="utf-8"))
    assert decoded.signatures[0] == wrapper["signature"]


def test_decoder_refuses_truncated_or_trailing_bytes() -> None:
    raw = base64.b64decode(load(f"{JOWENCY}/swap_raydium_v4_1.json")["transaction"][0])
    assert decode_transaction(raw).version == 0
    with pytest.raises(MessageError):
        decode_transaction(raw[:-1])
    with pytest.raises(MessageError):
        decode_transaction(raw + b"\0")


def test_decoder_reads_a_legacy_transaction() -> None:
    # A hand-built legacy transaction: 1 signature, header, 2 keys, blockhash, 1 instruction.
    key_a, key_b = bytes([1]) * 32, bytes([2]) * 32
    message = bytes([1, 0, 1, 2]) + key_a + key_b + bytes(32) + bytes([1, 1, 1, 0, 2, 9, 9])
    decoded = decode_transaction(bytes([1]) + bytes(range(64)) + message)
    assert decoded.version is None
    assert decoded.account_keys == [
        base58.b58encode(key_a).decode(),
        base58.b58encode(key_b).decode(),
    ]
    assert decoded.program_indexes == [1]


@pytest.mark.parametrize(
    ("encoded", "value"),
    [(b"\x00", 0), (b"\x7f", 127), (b"\x80\x01", 128), (b"\xff\xff\x03", 0xFFFF)],
)
def test_compact_u16_reads_solana_short_vector_lengths(encoded: bytes, value: int) -> None:
    reader = _Reader(encoded)
    assert reader.compact_u16() == value and reader.at == len(encoded)


@pytest.mark.parametrize(
    "encoded", [b"", b"\x80", b"\x80\x00", b"\xff\xff\x04", b"\xff\xff\xff\x01"]
)
def test_compact_u16_refuses_truncated_padded_or_overflowing(encoded: bytes) -> None:
    with pytest.raises(MessageError):
        _Reader(encoded).compact_u16()


# --- the DEX table -------------------------------------------------------------------------

# program id -> a real transaction of tests/data/rpc that invokes it (its name says the venue)
JUPAG, RUBBER = "jupag-instruction-parser__tx-", "rubberarchind-solana-txn-parser__"
DEX_EVIDENCE = {
    "JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4": f"{JUPAG}2kai9Wa4rc433U3Js.json",
    "JUP4Fb2cqiRUcaTHdrPC8h2gNsA2ETXiPDD33WcGuJB": f"{JOWENCY}/swap_jupiter_v4_1.json",
    "JUP2jxvXaqu7NQY1GmNF4m1vodw12LVXYxbFL2uJvfo": f"{JOWENCY}/swap_jupiter_v2_1.json",
    "6m2CDdhRgxpH4WjvdzxAYbGxwdGUz5MziiL5jek2kBma": f"{JOWENCY}/swap_okx_dex_1.json",
    "675kPX9MHTjS2zt1qfr1NYHuzeLXfQM9H24wFSUt1Mp8": f"{RUBBER}raydium_parsed-swap-txn.json",
    "CAMMCzo5YL8w4VFF8KVHrK22GGUsp5VTaW7grrKgrWqK": f"{JOWENCY}/swap_raydium_clmm_1.json",
    "CPMMoo8L3F4NbTegBCKVNunggL7H1ZpdTHKxQB5qKP1C": f"{JOWENCY}/swap_raydium_cpmm_1.json",
    "5quBtoiQqxF9Jv6KYKctB59NT3gtJD2Y65kdnB1Uev3h": f"{JOWENCY}/swap_raydium_amm_1.json",
    "LanMV9sAd7wArD4vJFi2qDdfnVhFxYSUg6eADduJ3uj": f"{JOWENCY}/swap_raydium_launchpad_1.json",
    "routeUGWgWzqBWFcrCfv8tritsqukccJPu3q5GPP3xS": f"{JOWENCY}/swap_raydium_route_1.json",
    "whirLbMiicVdio4qvUfM5KAg6Ct8VwpYzGff3uctyCc": f"{JOWENCY}/swap_orca_whirlpool_1.json",
    "DjVE6JNiYqPL2QXyCUUh8rNjHrbz9hXHNYt99MQ59qw1": f"{JOWENCY}/swap_orca_v1_1.json",
    "9W959DqEETiGZocYWCQPaJ6sBmUzgfxXfqGeTEdp3aQP": f"{JOWENCY}/swap_orca_v2_1.json",
    "LBUZKhRxPF3XUpBCjp4YzTKgLccjZhTSDM9YuVaPwxo": f"{JOWENCY}/swap_meteora_dlmm_1.json",
    "Eo7WjKq67rjJQSZxS6z3YkapzY3eMj6Xy8X5EQVn5UaB": f"{JOWENCY}/swap_meteora_damm_1.json",
    "cpamdpZCGKUy5JxQXB4dcpGPiikHawvSWAd6mEn1sGG": f"{JOWENCY}/swap_meteora_damm_v2_1.json",
    "6EF8rrecthR5Dkzon8Nwu78hRvfCKubJ14M5uBEwF6P": f"{RUBBER}pumpfun_parsed-buy-txn.json",
    "pAMMBay6oceH9fJKBRHGP5D4bD4sWpmSwMn52FMfXEA": f"{JOWENCY}/swap_pumpswap_1.json",
    "PhoeNiXZ8ByJGLkxNfZRnkUfjvmuYqLR89jjFHGqdXY": f"{JOWENCY}/swap_phoenix_1.json",
    "FLUXubRmkEi2q6K3Y9kBPg9248ggaZVsoSFhtJHSrm1X": f"{JOWENCY}/swap_fluxbeam_1.json",
}
# The Helius `source` names the table may use: those of the Helius samples (RAYDIUM,
# PUMP_AMM, METEORA) and those SPEC §4 and the brief name as Helius sources.
HELIUS_NAMES = {
    "JUPITER", "RAYDIUM", "ORCA", "METEORA", "PUMP_FUN", "PUMP_AMM", "OKX_DEX_ROUTER",
    "PHOENIX", "FLUXBEAM",
}  # fmt: skip


def test_every_dex_program_id_is_invoked_by_a_real_transaction() -> None:
    assert set(DEX_PROGRAMS) == set(DEX_EVIDENCE), "a program id without evidence"
    for program, name in DEX_EVIDENCE.items():
        assert program in invoked_programs(load(name)), f"{program} not invoked in {name}"
        assert DEX_PROGRAMS[program][0] in HELIUS_NAMES


def test_venue_files_name_their_venue() -> None:
    # A sample whose only DEX program is the venue's own is named after it.
    assert (
        dex_of(sorted(invoked_programs(load(f"{JOWENCY}/swap_raydium_clmm_1.json")))) == "RAYDIUM"
    )
    assert dex_of(sorted(invoked_programs(load(f"{JOWENCY}/swap_fluxbeam_2.json")))) == "FLUXBEAM"
    assert dex_of(sorted(invoked_programs(load(f"{JOWENCY}/swap_phoenix_1.json")))) == "PHOENIX"


def test_aggregator_wins_over_the_pools_it_routed_through() -> None:
    jupiter, raydium = (
        "JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4",
        "675kPX9MHTjS2zt1qfr1NYHuzeLXfQM9H24wFSUt1Mp8",
    )
    assert dex_of([raydium, jupiter]) == dex_of([jupiter, raydium]) == "JUPITER"
    assert dex_of(["11111111111111111111111111111111"]) is None


# --- the same transaction in other encodings -----------------------------------------------


def as_json_encoding(tx: dict[str, Any]) -> dict[str, Any]:
    """`tx` (base64 or jsonParsed) as the `json` encoding: plain static keys, compiled
    instructions by programIdIndex, lookup-table keys in meta.loadedAddresses."""
    out = copy.deepcopy(tx)
    meta, transaction = out["meta"], out["transaction"]
    if isinstance(transaction, list):
        decoded = decode_transaction(base64.b64decode(transaction[0]))
        static = decoded.account_keys
        instructions = [
            {"programIdIndex": i, "accounts": [], "data": ""} for i in decoded.program_indexes
        ]
        signatures = decoded.signatures
    else:
        entries = transaction["message"]["accountKeys"]
        static = [k["pubkey"] for k in entries if k.get("source", "transaction") == "transaction"]
        looked_up = [k for k in entries if k.get("source") == "lookupTable"]
        meta["loadedAddresses"] = {
            "writable": [k["pubkey"] for k in looked_up if k["writable"]],
            "readonly": [k["pubkey"] for k in looked_up if not k["writable"]],
        }
        keys = static + meta["loadedAddresses"]["writable"] + meta["loadedAddresses"]["readonly"]
        assert keys == [k["pubkey"] for k in entries]  # the order json encoding implies
        instructions = [
            {"programIdIndex": keys.index(i["programId"]), "accounts": [], "data": ""}
            for i in transaction["message"]["instructions"]
        ]
        for group in meta.get("innerInstructions") or []:
            group["instructions"] = [
                {"programIdIndex": keys.index(i["programId"]), "accounts": [], "data": ""}
                for i in group["instructions"]
            ]
        signatures = transaction["signatures"]
    out["transaction"] = {
        "signatures": signatures,
        "message": {"accountKeys": static, "instructions": instructions},
    }
    return out


@pytest.mark.parametrize("name", all_samples())
def test_every_sample_gives_the_same_trade_in_json_encoding(name: str) -> None:
    # No signature is in the samples twice (checked below), so the second form is derived.
    tx = load(name)
    wallet = fee_payer(tx)
    assert parse_rpc_transaction(as_json_encoding(tx), wallet) == parse_rpc_transaction(tx, wallet)


def test_base58_encoding_reads_like_base64() -> None:
    tx = copy.deepcopy(load(f"{JOWENCY}/swap_pumpswap_1.json"))
    wallet = "35f43Y1q1EQuKPrDSN4KCuFCdR3oV8ahC4LxyRLYumsA"
    expected = parse_rpc_transaction(tx, wallet)
    raw = base64.b64decode(tx["transaction"][0])
    tx["transaction"] = [base58.b58encode(raw).decode(), "base58"]
    assert expected is not None and parse_rpc_transaction(tx, wallet) == expected


def test_no_signature_is_in_two_sample_files() -> None:
    seen: dict[str, str] = {}
    for name in all_samples():
        tx = load(name)
        transaction = tx["transaction"]
        if isinstance(transaction, list):
            signature = decode_transaction(base64.b64decode(transaction[0])).signatures[0]
        else:
            signature = transaction["signatures"][0]
        assert signature not in seen, f"{name} repeats {seen[signature]}: add a cross test"
        seen[signature] = name
