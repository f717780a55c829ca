"""Trade parsing checked against hand-derived expectations from the real Helius samples."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from walletd.trades.model import Trade
from walletd.upstream.helius.reader import parse_transaction

# The walletdoctor samples' wallet.
WALLET = "3JoVBiQEA2QKsq7TzW5ez5jVRtbbYgTNijoZzp5qgkr2"

WSOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"

DEBUG = "walletdoctor_3JoVBiQE_debug.json"
ANALYSIS = "walletdoctor_transaction_format_analysis.json"
PUMP = "walletdoctor_pump_transaction_data.json"
NFT_SALE = "helius_docs_webhook_enhanced_nft_sale.json"
DOCS_TRANSFER = "helius_docs_parse_transactions_transfer.json"
SAMPLE_FILES = (DEBUG, ANALYSIS, PUMP, NFT_SALE, DOCS_TRANSFER)


def _load(folder: Path, name: str) -> Any:
    with open(folder / name, encoding="utf-8") as fh:
        return json.load(fh)


def _records(folder: Path, name: str) -> list[Any]:
    """The transaction records a sample file holds (fresh copies, safe to mutate)."""
    data = _load(folder, name)
    if name == ANALYSIS:
        return list(data["with_swap_event"]) + list(data["without_swap_event"])
    if isinstance(data, list):
        return data
    return [data]


def _all_records(folder: Path) -> list[tuple[str, Any]]:
    return [(name, rec) for name in SAMPLE_FILES for rec in _records(folder, name)]


def _record(folder: Path, name: str, signature: str) -> dict[str, Any]:
    found = [r for r in _records(folder, name) if r.get("signature") == signature]
    assert len(found) == 1, f"{signature} should appear exactly once in {name}"
    return found[0]


_BASE58_ADDRESS = re.compile(r"^[1-9A-HJ-NP-Za-km-z]{32,44}$")


def _addresses(value: Any) -> Iterator[str]:
    """Every string anywhere in the tx that looks like an account address."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _addresses(item)
    elif isinstance(value, list):
        for item in value:
            yield from _addresses(item)
    elif isinstance(value, str) and _BASE58_ADDRESS.match(value):
        yield value


def _candidate_wallets(tx: dict[str, Any]) -> list[str]:
    """Accounts named in the tx: accountData accounts, transfer parties, feePayer, and the rest."""
    found: set[str] = set(_addresses(tx))
    for entry in tx.get("accountData") or []:
        found.add(entry["account"])
        for change in entry.get("tokenBalanceChanges") or []:
            found.update((change["userAccount"], change["tokenAccount"]))
    for transfer in tx.get("tokenTransfers") or []:
        for key in ("fromUserAccount", "toUserAccount", "fromTokenAccount", "toTokenAccount"):
            found.add(transfer[key])
    natives = tx.get("nativeTransfers") or []
    for transfer in natives if isinstance(natives, list) else [natives]:
        found.update((transfer["fromUserAccount"], transfer["toUserAccount"]))
    if tx.get("feePayer"):
        found.add(tx["feePayer"])
    found.discard("")
    found.discard(tx.get("signature", ""))
    return sorted(found)


def _sol(amount: str) -> dict[str, Any]:
    return {"mint": WSOL, "symbol": "SOL", "amount": amount, "decimals": 9}


def _token(mint: str, amount: str, decimals: int) -> dict[str, Any]:
    return {"mint": mint, "symbol": None, "amount": amount, "decimals": decimals}


# --------------------------------------------------------------------------- expected trades
# Every number below was read off the sample JSON and added up by hand; none comes from the
# parser. Mints of the memecoins involved:
MOON_2GA = "2GaUUmQFCHSMLRMySzjvdqwLCcGVdUpcsQDanpjwmoon"
MOON_B96 = "B969SkrvfafaAD2Q5bHc23zRCEBFWtF2VhKCd2GHmoon"
PUMP_B91 = "B91Nyc6SnWqr5DRR34eEMKuZrWh4zBhW9VhX4UNLpump"
PUMP_GUF = "GuFK1iRQPCSRxPxWhw94SrDtLYaf7oDT68uuDDpjpump"
PUMP_B1O = "B1oEzGes1QxVZoxR3abiwAyL4jcPRF2s2ok5Yerrpump"
PUMP_CLE = "CLEjjvLaGoQjGxu1N3iVvjaCxDVtEZv4YJ3pSoAYpump"
MOON_4UF = "4Uf883orBx89VQZiV4EoRpNqUWYN5ZuEvC4PCpQ9moon"

SIG_5G5 = "5g5rkbqii8rkHfgC8CWLDB2bBzKeoXcqmjyFbMvxUW9xXEEHnFc1QRqiG9eEcxdmLk6XgjVpJRnwYqqbWZKg3eBP"
SIG_4EE = "4EeVbfsnYj9p9T4kwPJDKu2qi1PF9ixrFAgvs5kwZqBnssEUs1hpNBcfCV5iq3ZkzuZJo1Re3sWaanQRvMbb9fR"
SIG_2YQ = "2YQi9Dp4fW9vCuRgfUMQt5smTduQuSsg2ieeJno3XuejSabYWr9E2eWm9qFSQRgX9mWyQ7CrGQKk9HLoq27GQMfP"
SIG_4TW = "4TwWWRDtWvrSRhkxkDGTtgaHyqYfUnDbMX7W22g7CVVxJBKETz9DY98WtjsSSJ4pY2sivgJjC5FdxQ5sdSigo6XD"
SIG_2UB = "2uBhmjvYbffVjFQKVEXbzXyFfFMSWGkwxFGFz2sNsCkeLrjnfyAr2qCaWFBoDaibamqvcGSEoJ5XNK8J8bpY4VUp"
SIG_5K9 = "5k9gGESAP5rFRBgdxNwSFw1f83o8JKaKBo9DHDs4XCdCSF9FcZFHN9uaxBKhAVANZgB8WiEim8bq7jHXfDqsgRsY"
SIG_5KV = "5kvb9zhEq4EhVjVi1wFQnUVeZtCEUeGKYp4rpsH9tizGo6X6UGESCG1FX9R2x9vY4aiJ1TJZGn26RXcwGUv8UCGN"
SIG_46B = "46BEg4676GJEtiR9YKFBKwnANta1RrEZLUc3e2SEhoNMtgycPdU6h7hxvVgDuF7LhAvQzZFw4Ce7NyuL7Tcdwdz5"
SIG_2VQ = "2VqCQEMpvZnwX6boRY9pAoyS2EHDcrcyBSaHcd2WwoR8k47fKaoAN3wruf4iBAjBTgD5tywF9jsuFteRyNbNWWxn"
SIG_2MT = "2mtfVBTfGhZR1fciZJaPtpsCSUfJ5P3GXCyTaGsAJkYHRow7CYaiFzLNxNsVGLVvdXW8SxVkXJf6FNKC5YwaULCM"
SIG_DHU = "DhunwufxawKDw9ftNM7GFYLVVDTwFNMcRJSxwb3o9eEtAv7Yu5hojjsj2YJoqWNbC2Dkn5vLCtQf41wcgEuPH4H"
SIG_2OY = "2oywWG3d6Gdqh7LMpL4zNL4rKe2hBDBtCd4ZyjTFGY5dqyDA9A7UFGESvQShAMMjJbDwePGE3rDWXSwm6u5RP3yf"
SIG_5VM = "5vmh4yHxtEsmXhMw6AJ7XmXMfJGF4UxJoKWqWPP6fnLwHzaaTHAXyK4AGyt2cdSTsyhZpVU9YXxvwfqMN96Shozx"
SIG_5BM = "5bmMy2Zpwp89b5NDaZcmgknsmiE35GixzVJnZMviQzRZjP9bJbLAy9fT3U6N1JRTNooCmVWkKMR2aoKKwhdLXwvD"

# fmt: off
EXPECTED: list[tuple[str, str, dict[str, Any]]] = [
    # ---- full RAYDIUM records (rule 2: accountData). Fee 8005000 paid by the wallet.
    (DEBUG, SIG_5G5, {
        # SOL: +57066397 native + 8005000 fee; wallet token account DgLta nativeBalanceChange 0
        #      (temporary wSOL account DuZiQ opened+closed: 0, no tokenBalanceChanges)
        #      = +65071397 lamports = +0.065071397 SOL
        #      (= 77849895 unwrapped - 12000000 tip - 778498 tip)
        # 2GaUU: -1986656546333 raw, 6 dec = -1986656.546333; USDC hop nets out (no change)
        "signature": SIG_5G5, "slot": 349787167, "timestamp": 1751126222,
        "action": "sell", "dex": "RAYDIUM",
        "token_in": _token(MOON_2GA, "1986656.546333", 6),
        "token_out": _sol("0.065071397"),
        "fee_sol": "0.008005",
    }),
    (DEBUG, SIG_4EE, {
        # SOL: -2022044280 native + 8005000 fee + 2039280 rent (DgLta opened, the wallet paid
        #      it: nativeTransfer 3JoV -> DgLta) = -2012000000 lamports = -2.012 SOL
        #      (= 1.98 wrapped + 0.012 tip + 0.02 tip)
        # 2GaUU: +1986656546333 raw, 6 dec = +1986656.546333
        "signature": SIG_4EE, "slot": 349670658, "timestamp": 1751079925,
        "action": "buy", "dex": "RAYDIUM",
        "token_in": _sol("2.012"),
        "token_out": _token(MOON_2GA, "1986656.546333", 6),
        "fee_sol": "0.008005",
    }),
    (DEBUG, SIG_2YQ, {
        # SOL: +1420951311 native + 8005000 fee; GLQf4 nativeBalanceChange 0
        #      = +1428956311 lamports = +1.428956311 SOL
        #      (= 1455511425 unwrapped - 12000000 tip - 14555114 tip)
        # B969S: -1367512598399 raw, 6 dec = -1367512.598399
        "signature": SIG_2YQ, "slot": 349638276, "timestamp": 1751067104,
        "action": "sell", "dex": "RAYDIUM",
        "token_in": _token(MOON_B96, "1367512.598399", 6),
        "token_out": _sol("1.428956311"),
        "fee_sol": "0.008005",
    }),
    (DEBUG, SIG_4TW, {
        # SOL: -2022044280 native + 8005000 fee + 2039280 rent (GLQf4 opened by the wallet)
        #      = -2012000000 lamports = -2.012 SOL
        # B969S: +1367512598399 raw, 6 dec = +1367512.598399
        "signature": SIG_4TW, "slot": 349634414, "timestamp": 1751065577,
        "action": "buy", "dex": "RAYDIUM",
        "token_in": _sol("2.012"),
        "token_out": _token(MOON_B96, "1367512.598399", 6),
        "fee_sol": "0.008005",
    }),
    # ---- partial records (rule 3: tokenTransfers only; no fee, feePayer, slot,
    #      nativeTransfers or accountData, so no tips, no fee and slot None).
    (ANALYSIS, SIG_5G5, {
        # 2GaUU: out 1986656.546333 (6 fractional digits -> decimals 6)
        # USDC: in 11.493485, out 11.493485 -> 0
        # wSOL: in 0.077849895 -> SOL +0.077849895 (tips invisible here)
        "signature": SIG_5G5, "slot": None, "timestamp": 1751126222,
        "action": "sell", "dex": "RAYDIUM",
        "token_in": _token(MOON_2GA, "1986656.546333", 6),
        "token_out": _sol("0.077849895"),
        "fee_sol": None,
    }),
    (ANALYSIS, SIG_4EE, {
        # USDC: out 282.999734, in 282.999734 -> 0; wSOL out 1.98 -> SOL -1.98
        # 2GaUU: in 1986656.546333 (decimals 6)
        "signature": SIG_4EE, "slot": None, "timestamp": 1751079925,
        "action": "buy", "dex": "RAYDIUM",
        "token_in": _sol("1.98"),
        "token_out": _token(MOON_2GA, "1986656.546333", 6),
        "fee_sol": None,
    }),
    (ANALYSIS, SIG_2YQ, {
        # B969S: out 1367512.598399 (decimals 6); USDC 207.715684 in and out -> 0
        # wSOL: in 1.455511425
        "signature": SIG_2YQ, "slot": None, "timestamp": 1751067104,
        "action": "sell", "dex": "RAYDIUM",
        "token_in": _token(MOON_B96, "1367512.598399", 6),
        "token_out": _sol("1.455511425"),
        "fee_sol": None,
    }),
    (ANALYSIS, SIG_2UB, {
        # B91Ny: out 561218.676075 (decimals 6)
        # wSOL: in 2.201676608 (the two 0.001104151 legs go to other users)
        "signature": SIG_2UB, "slot": None, "timestamp": 1750314979,
        "action": "sell", "dex": "PUMP_AMM",
        "token_in": _token(PUMP_B91, "561218.676075", 6),
        "token_out": _sol("2.201676608"),
        "fee_sol": None,
    }),
    (ANALYSIS, SIG_5K9, {
        # B91Ny: in 561218.676075 (decimals 6)
        # wSOL out: 1.97802592 + 0.000987039 + 0.000987039 = 1.979999998
        "signature": SIG_5K9, "slot": None, "timestamp": 1750308102,
        "action": "buy", "dex": "PUMP_AMM",
        "token_in": _sol("1.979999998"),
        "token_out": _token(PUMP_B91, "561218.676075", 6),
        "fee_sol": None,
    }),
    (ANALYSIS, SIG_5KV, {
        # GuFK1: out 10635639.360535 (decimals 6); wSOL in 7.049972053
        "signature": SIG_5KV, "slot": None, "timestamp": 1750274394,
        "action": "sell", "dex": "PUMP_AMM",
        "token_in": _token(PUMP_GUF, "10635639.360535", 6),
        "token_out": _sol("7.049972053"),
        "fee_sol": None,
    }),
    (ANALYSIS, SIG_46B, {
        # B1oEz: in 176309.290384 (decimals 6)
        # wSOL out: 1.97802592 + 0.000987039 + 0.000987039 = 1.979999998
        "signature": SIG_46B, "slot": None, "timestamp": 1750180841,
        "action": "buy", "dex": "PUMP_AMM",
        "token_in": _sol("1.979999998"),
        "token_out": _token(PUMP_B1O, "176309.290384", 6),
        "fee_sol": None,
    }),
    (ANALYSIS, SIG_2VQ, {
        # B1oEz: in 2178842.967573 (decimals 6)
        # wSOL out: 39.560518443 + 0.019740778 + 0.019740778 = 39.599999999
        "signature": SIG_2VQ, "slot": None, "timestamp": 1750180128,
        "action": "buy", "dex": "PUMP_AMM",
        "token_in": _sol("39.599999999"),
        "token_out": _token(PUMP_B1O, "2178842.967573", 6),
        "fee_sol": None,
    }),
    (ANALYSIS, SIG_2MT, {
        # CLEjj: out 1355458.849324 (decimals 6); wSOL in 6.987374957
        "signature": SIG_2MT, "slot": None, "timestamp": 1750177099,
        "action": "sell", "dex": "PUMP_AMM",
        "token_in": _token(PUMP_CLE, "1355458.849324", 6),
        "token_out": _sol("6.987374957"),
        "fee_sol": None,
    }),
    (ANALYSIS, SIG_DHU, {
        # CLEjj: in 1355458.849324 (decimals 6)
        # wSOL out: 7.912103687 + 0.003948156 + 0.003948156 = 7.919999999
        "signature": SIG_DHU, "slot": None, "timestamp": 1750174634,
        "action": "buy", "dex": "PUMP_AMM",
        "token_in": _sol("7.919999999"),
        "token_out": _token(PUMP_CLE, "1355458.849324", 6),
        "fee_sol": None,
    }),
    (ANALYSIS, SIG_2OY, {
        # 4Uf88 out: 1113.140597154 + 555457.157979893 = 556570.298577047 (9 frac digits)
        # wSOL in: 33.270493429. The FZN7Q / 95eWX legs have no wallet party.
        "signature": SIG_2OY, "slot": None, "timestamp": 1750135448,
        "action": "sell", "dex": "METEORA",
        "token_in": _token(MOON_4UF, "556570.298577047", 9),
        "token_out": _sol("33.270493429"),
        "fee_sol": None,
    }),
    (ANALYSIS, SIG_5VM, {
        # GuFK1: in 10635639.360535 (decimals 6)
        # wSOL out: 4.450558323 + 0.002220838 + 0.002220838 = 4.454999999
        "signature": SIG_5VM, "slot": None, "timestamp": 1750120087,
        "action": "buy", "dex": "PUMP_AMM",
        "token_in": _sol("4.454999999"),
        "token_out": _token(PUMP_GUF, "10635639.360535", 6),
        "fee_sol": None,
    }),
    (ANALYSIS, SIG_5BM, {
        # wSOL out: 0.0693 + 34.5807 = 34.65
        # 4Uf88: in 556570.298577047 (9 fractional digits -> decimals 9)
        "signature": SIG_5BM, "slot": None, "timestamp": 1750118070,
        "action": "buy", "dex": "METEORA",
        "token_in": _sol("34.65"),
        "token_out": _token(MOON_4UF, "556570.298577047", 9),
        "fee_sol": None,
    }),
    # ---- pump file: same tx as SIG_2UB, but with one nativeTransfers OBJECT (not a list)
    #      and no timestamp.
    (PUMP, SIG_2UB, {
        # B91Ny: out 561218.676075 (decimals 6)
        # SOL: +2.201676608 wSOL in = +2201676608 lamports, - 12000000 native 3JoV -> nEXTB
        #      (a tip; nEXTB is not one of the wallet's token accounts 3gQEd/BNj7V)
        #      = 2189676608 lamports = 2.189676608 SOL
        "signature": SIG_2UB, "slot": None, "timestamp": None,
        "action": "sell", "dex": "PUMP_AMM",
        "token_in": _token(PUMP_B91, "561218.676075", 6),
        "token_out": _sol("2.189676608"),
        "fee_sol": None,
    }),
]

# fmt: on

# Non-swap records: no account named in them has a trade.
#  * the SYSTEM_PROGRAM dust sprays: sender pays 1..100 lamports per receiver plus the fee
#    (fee added back: only ~20..800 lamports out, dust), receivers get 1 or 100 lamports (dust);
#  * 2PrmgVSs (SPL airdrop of AfxjN): the sender EMPF9 loses tokens and 16365940 - 19700 fee
#    = 16346240 lamports (rent + 32000), nothing goes up; each receiver gets tokens only (its
#    new token account's +2039280 was paid by EMPF9, so it is not the receiver's SOL);
#  * docs transfer: M2mx9 -0.1 SOL (fee added back), FXvSt +0.1 SOL: one side each;
#  * docs NFT sale: buyer CKs1E -72938049280 + 10000 fee + 2039280 rent = -72936000000
#    lamports and +1 NFT (dropped); seller 5DxD5 +71860273440 only; 1BWut -1 NFT (dropped)
#    and -2039280 (its token account closed); royalty/fee accounts move SOL only.
_NON_SWAP_DEBUG = [
    "2NNXeSqFCn5J1XeTfSdzgVPDhHWnMYeGKXFJkYmmK3mCRCS6DFGw7H3H4N5nJgR1gWVweGyM1ZZter4PbjJvu4qj",
    "3ENijAYYYvQG1e3F51xUiDz4oHBhByo8LHTX97jTReHLYZqud265WntapwTPQP18ivzDM7gGbii1WY6iNkShwCfF",
    "4odp3QkiuXH3xrJ6BDUF5Xcfs4LSDKu21Nwzu6FGkfc5fkGKC5oVP7VYSzmTGxv4mJa8zLUmnY8kDvnxoEXcr7wT",
    "2VtTwuwfPGKpWdVDfSNeeo1CPJ8FBFgiRb8G6pzZ2qBgyWcoHh2aQhYonZSMdLWXY6tdJCF13zxTcbvejU9G3tXG",
    "Vu9K7eTJAZrixabHn1btzR384nanGKPAZqv5sBsDcxb8ejDiJhb8A3tao2sGoQMTzdctQdLK4Zmw6FtaKzYzpqT",
    "3jpZieynZx1kiHkuJerN5gwEYrM7Fym5UppNp5S1TpGP4tjYuLL2PNz4ybXiCgnPGf2Nu8c7L1Y95qvu6NPNvVut",
    "3X71ebxenTQS9pv2vqsTkEibSWARTamhWmeAEm1gfjnUjphcp8YM7ewt4ZJYtuXMb8iMqP1Vo8RFSjykWNymy5Au",
    "epDFpGZEU94bj8YEibrBdvLvXdmN3PrtvDAApinBJ64DHb3K8SJu3iruSvN1sr9Zry76oyqW7XTe8X5wYjxecuR",
    "4vPRkCZecg25A2Ee27tgBAXaTmrNjwhXQoR2f4NVHj4mwdcrcBpVSxz4VyupEEWCcj4MZbXuFtz2Bdfkcuto4Hzd",
    "3PBC4gij5uoSGkyDQMsdPKMscNPPVAbRFC8FDevS7BiwLRReys5WnMBZbDYTC6ao8rVgvEBqAiDLk9be4Mme4rLG",
    "3oDtRaTBvXPvDF55xScv8jk3rHApADyAgHKMW4seigkjFvvE5tWTLfgspoBrDWaUgx3sYjjmJvdq4wuJz6jTZqCc",
    "fEqnNCFTqqkQBDk1ZmLKRoXm6xWGVURkar7cW1oCp387hicL6ZW3PLyyMRC3WARzQcycYHfwb8LkPdAep5MeTxZ",
    "4qemoKZsRt1m5vLtgyRwqZaH6hWwvC525Anb2UxzAP4dc35Hp3bXVJkCp6x8PzbAtnYktSpPezguTBW43XHjGm2k",
    "2PrmgVSsAQy51FNBK7P9fopcgwfojijXhEGkgjKoA9msNo89Xn4iznXEQw1LSxvv1TMqzUs5ckZBfyoWib59Eo3T",
    "4D9aZRX8fUrKh2yW3aMfbuJ88aRxttaUsBmSdYoXNG6gDDLLMSC8byyMDJb4ssznBKK5rvHHfjibnfbyKzJ2E2Nf",
    "3DPyENpWYpmtHFA8jTeoCrpF7MsVQLMcQLT8YbaMi44MrCnocjWRbUv85WxrAdskupbsNDu7xitF74J2SdbbTukE",
]
NON_SWAP: list[tuple[str, str]] = [
    *((DEBUG, sig) for sig in _NON_SWAP_DEBUG),
    (
        DOCS_TRANSFER,
        "5rfFLBUp5YPr6rC2g1KBBW8LGZBcZ8Lvs7gKAdgrBjmQvFf6EKkgc5cpAQUTwGxDJbNqtLYkjV5vS5zVK4tb6JtP",
    ),
    (
        NFT_SALE,
        "5nNtjezQMYBHvgSQmoRmJPiXGsPAWmJPoGSa64xanqrauogiVzFyGQhKeFataHGXq51jR2hjbzNTkPUpP787HAmL",
    ),
]


_SHORT = {
    DEBUG: "debug",
    ANALYSIS: "analysis",
    PUMP: "pump",
    NFT_SALE: "nft",
    DOCS_TRANSFER: "docs",
}


def _id(name: str, signature: str) -> str:
    return f"{_SHORT[name]}-{signature[:8]}"


# --------------------------------------------------------------------------- tests


def test_sample_inventory_covered_when_loaded(helius_dir: Path) -> None:
    """Every record in the sample files is either an expected swap or a listed non-swap."""
    seen = sorted((name, rec["signature"]) for name, rec in _all_records(helius_dir))
    listed = sorted([(name, sig) for name, sig, _ in EXPECTED] + NON_SWAP)
    assert seen == listed
    assert len(EXPECTED) == 18
    assert len(NON_SWAP) == 18


@pytest.mark.parametrize(
    ("name", "signature", "expected"),
    [pytest.param(n, s, e, id=_id(n, s)) for n, s, e in EXPECTED],
)
def test_parse_matches_hand_derived_trade_when_swap(
    helius_dir: Path, name: str, signature: str, expected: dict[str, Any]
) -> None:
    tx = _record(helius_dir, name, signature)
    trade = parse_transaction(tx, WALLET)
    assert trade is not None, f"{signature[:8]} in {name} should be a trade"
    assert isinstance(trade, Trade)
    assert trade.to_dict() == expected


@pytest.mark.parametrize(
    ("name", "signature"), [pytest.param(n, s, id=_id(n, s)) for n, s in NON_SWAP]
)
def test_parse_returns_none_for_every_account_when_not_swap(
    helius_dir: Path, name: str, signature: str
) -> None:
    tx = _record(helius_dir, name, signature)
    wallets = _candidate_wallets(tx)
    assert WALLET in wallets or name != DEBUG
    trades = {wallet: parse_transaction(tx, wallet) for wallet in wallets}
    assert {w: t.to_dict() for w, t in trades.items() if t is not None} == {}


def test_parse_yields_at_most_one_trade_when_any_sample_record(helius_dir: Path) -> None:
    """One call gives one Trade or None, for the signature parsed, and never raises."""
    junk_wallets = ["", "not-a-wallet", "11111111111111111111111111111111"]
    for name, tx in _all_records(helius_dir):
        for wallet in [*_candidate_wallets(tx), *junk_wallets]:
            trade = parse_transaction(tx, wallet)
            assert trade is None or isinstance(trade, Trade), (name, tx["signature"], wallet)
            if trade is not None:
                as_dict = trade.to_dict()
                assert as_dict["signature"] == tx["signature"]
                json.dumps(as_dict)


def test_parse_returns_none_when_given_whole_sample_files(helius_dir: Path) -> None:
    """The containers (a page array, the analysis object) are not transactions."""
    for name in SAMPLE_FILES:
        data = _load(helius_dir, name)
        if isinstance(data, list):
            assert parse_transaction(data, WALLET) is None, name
    analysis = _load(helius_dir, ANALYSIS)
    assert parse_transaction(analysis, WALLET) is None
    for entries in analysis["by_source"].values():
        for entry in entries:  # signature + structure_keys only: no balances at all
            assert parse_transaction(entry, WALLET) is None


@pytest.mark.parametrize(
    "error",
    [
        {"InstructionError": [3, {"Custom": 6001}]},
        "InsufficientFundsForFee",
        {"InstructionError": [0, "ProgramFailedToComplete"]},
    ],
)
@pytest.mark.parametrize(
    ("name", "signature"),
    [
        pytest.param(DEBUG, SIG_4EE, id="debug-full"),
        pytest.param(ANALYSIS, SIG_5BM, id="analysis-partial"),
        pytest.param(PUMP, SIG_2UB, id="pump-partial"),
    ],
)
def test_parse_returns_none_when_transaction_error_set(
    helius_dir: Path, name: str, signature: str, error: Any
) -> None:
    tx = _record(helius_dir, name, signature)
    assert parse_transaction(tx, WALLET) is not None  # a trade while it succeeded
    failed = copy.deepcopy(tx)
    failed["transactionError"] = error
    assert parse_transaction(failed, WALLET) is None


# Modified copies of real swaps, each pinning one rule the unmodified samples cannot tell apart.


def _expected(name: str, signature: str) -> dict[str, Any]:
    return copy.deepcopy(next(e for n, s, e in EXPECTED if (n, s) == (name, signature)))


@pytest.mark.parametrize("label", ["TRANSFER", "UNKNOWN", None, "__deleted__"])
@pytest.mark.parametrize(
    ("name", "signature"),
    [
        pytest.param(DEBUG, SIG_5G5, id="debug-5g5rkbqi"),
        pytest.param(ANALYSIS, SIG_5K9, id="analysis-5k9gGESA"),
    ],
)
def test_parse_ignores_type_when_swap_labelled_otherwise(
    helius_dir: Path, name: str, signature: str, label: str | None
) -> None:
    tx = _record(helius_dir, name, signature)
    if label == "__deleted__":
        tx.pop("type", None)
    else:
        tx["type"] = label
    trade = parse_transaction(tx, WALLET)
    assert trade is not None
    assert trade.to_dict() == _expected(name, signature)


def test_parse_omits_fee_when_wallet_not_fee_payer(helius_dir: Path) -> None:
    tx = _record(helius_dir, DEBUG, SIG_5G5)
    tx["feePayer"] = "FhVo3mqL8PW5pH5U2CN4XE33DokiyZnUwuGpH2hmHLuM"
    # SOL: +57066397 native, no fee added back = +0.057066397 SOL
    expected = _expected(DEBUG, SIG_5G5) | {"token_out": _sol("0.057066397"), "fee_sol": None}
    trade = parse_transaction(tx, WALLET)
    assert trade is not None
    assert trade.to_dict() == expected


def test_parse_keeps_rent_out_when_another_account_paid_it(helius_dir: Path) -> None:
    tx = _record(helius_dir, DEBUG, SIG_4EE)
    rent = tx["nativeTransfers"][1]
    assert (rent["toUserAccount"], rent["amount"]) == (
        "DgLtaGw3eAUWvas4jdqhu9hH5vQJFtJeg2KW6FWsP52i",
        2039280,
    )
    rent["fromUserAccount"] = "HWEoBxYs7ssKuudEjzjmpfJVX7Dvi7wescFsVx2L5yoY"
    # SOL: -2022044280 native + 8005000 fee, DgLta's +2039280 no longer the wallet's
    #      = -2014039280 lamports = -2.01403928 SOL
    expected = _expected(DEBUG, SIG_4EE) | {"token_in": _sol("2.01403928")}
    trade = parse_transaction(tx, WALLET)
    assert trade is not None
    assert trade.to_dict() == expected


@pytest.mark.parametrize(
    ("sol_in", "expected_sol"),
    [
        (0.00001, None),  # 10000 lamports: dust, no SOL leg, nothing went up -> no trade
        (0.000010001, "0.000010001"),  # 10001 lamports: a leg (repr is 1.0001e-05)
    ],
)
def test_parse_drops_sol_leg_when_dust(
    helius_dir: Path, sol_in: float, expected_sol: str | None
) -> None:
    tx = _record(helius_dir, ANALYSIS, SIG_5G5)
    unwrap = tx["tokenTransfers"][3]
    assert (unwrap["mint"], unwrap["toUserAccount"]) == (WSOL, WALLET)
    unwrap["tokenAmount"] = sol_in
    trade = parse_transaction(tx, WALLET)
    if expected_sol is None:
        assert trade is None
    else:
        assert trade is not None
        expected = _expected(ANALYSIS, SIG_5G5) | {"token_out": _sol(expected_sol)}
        assert trade.to_dict() == expected


# --------------------------------------------------------------------------- properties

_HELIUS_KEYS = (
    "signature slot timestamp type source fee feePayer transactionError accountData account "
    "nativeBalanceChange tokenBalanceChanges userAccount tokenAccount rawTokenAmount tokenAmount "
    "decimals mint tokenTransfers fromUserAccount toUserAccount fromTokenAccount toTokenAccount "
    "tokenStandard nativeTransfers amount events swap"
).split()
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**20), max_value=10**20).map(str)
    | st.floats()
    | st.text(max_size=50)
    | st.sampled_from([WALLET, WSOL, USDC, "", "-1", "1e9", "NaN", "0x10"])
)
_JSON = st.recursive(
    _SCALARS,
    lambda children: (
        st.lists(children, max_size=6)
        | st.dictionaries(
            st.sampled_from(_HELIUS_KEYS) | st.text(max_size=12), children, max_size=8
        )
    ),
    max_leaves=40,
)
_WALLETS = st.sampled_from([WALLET, "FhVo3mqL8PW5pH5U2CN4XE33DokiyZnUwuGpH2hmHLuM"]) | st.text()


@settings(max_examples=300, deadline=None)
@given(tx=_JSON, wallet=_WALLETS)
def test_parse_never_raises_when_arbitrary_json(tx: Any, wallet: str) -> None:
    trade = parse_transaction(tx, wallet)
    assert trade is None or isinstance(trade, Trade)
    if trade is not None:
        trade.to_dict()


def _slots(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Paths to every dict value and list element inside `value`."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*path, key)
            yield from _slots(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*path, index)
            yield from _slots(item, (*path, index))


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data(), wallet=_WALLETS)
def test_parse_never_raises_when_samples_mutated(
    helius_dir: Path, data: st.DataObject, wallet: str
) -> None:
    records = _mutation_pool(helius_dir)
    tx = copy.deepcopy(data.draw(st.sampled_from(records), label="record"))
    for _ in range(data.draw(st.integers(min_value=1, max_value=6), label="mutations")):
        paths = list(_slots(tx))
        if not paths:
            break
        path = paths[data.draw(st.integers(min_value=0, max_value=len(paths) - 1))]
        parent = tx
        for step in path[:-1]:
            parent = parent[step]
        if data.draw(st.booleans(), label="delete"):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(_JSON, label="junk")
    trade = parse_transaction(tx, wallet)
    assert trade is None or isinstance(trade, Trade)
    if trade is not None:
        trade.to_dict()


_POOL: dict[Path, list[Any]] = {}


def _mutation_pool(folder: Path) -> list[Any]:
    """Swap records first (the interesting ones), then everything else; loaded once."""
    if folder not in _POOL:
        swaps = [_record(folder, n, s) for n, s, _ in EXPECTED]
        others = [_record(folder, n, s) for n, s in NON_SWAP]
        _POOL[folder] = swaps + others
    return _POOL[folder]
