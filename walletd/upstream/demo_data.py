"""The demo source's synthetic wallets and transactions: pure functions of the address.

Histories come in Helius's enhanced-transaction shape (accountData, tokenTransfers,
nativeTransfers, mislabelled types, missing `events.swap`, failed swaps, spam dust,
NFT buys) and go through the same parser as Helius data, so the demo exercises the
real code path. Size is a function of the address: one address in sixteen has no
history, one in about a thousand has 20,000+ transactions.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import random
from typing import Any

import base58

from walletd.trades.solana import SOL_DECIMALS, USDC_MINT, USDT_MINT, WSOL_MINT
from walletd.upstream.helius.reader import KNOWN_DECIMALS

RENT = 2_039_280
_DEXES = ("RAYDIUM", "PUMP_AMM", "METEORA", "JUPITER", "ORCA", "PUMP_FUN")
_GENESIS_SLOT = 350_000_000
_GENESIS_TIME = 1_751_000_000


def _digest(*parts: str | int) -> bytes:
    return hashlib.sha256("/".join(map(str, parts)).encode()).digest()


def history_size(address: str) -> int:
    """How many transactions the demo history of `address` holds (0 means none)."""
    h = _digest("size", address)
    if h[0] % 16 == 0:
        return 0
    if h[1] % 32 == 0 and h[2] % 32 == 0:
        return 20_000 + int.from_bytes(h[3:5], "big") % 10_000
    return 5 + int.from_bytes(h[3:5], "big") % 600


@functools.lru_cache(maxsize=65536)
def _account(*parts: str | int) -> str:
    """A stable address for a role; cached, since base58 encoding dominates generation."""
    return base58.b58encode(_digest("acct", *parts)).decode()


def signature_at(address: str, index: int) -> str:
    """The signature of the `index`-th newest transaction of `address`."""
    return base58.b58encode(hashlib.sha512(f"sig/{address}/{index}".encode()).digest()).decode()


class _Wallet:
    """What a generated history needs to know about one wallet; cached per address.

    Signatures are derived lazily: hashing and encoding 25,000 of them up front would
    hold the event loop for most of a second.
    """

    __slots__ = ("address", "index", "mints", "signatures", "size")

    def __init__(self, address: str) -> None:
        self.address = address
        self.size = history_size(address)
        self.signatures: list[str] = []
        self.index: dict[str, int] = {}
        rng = random.Random(_digest("mints", address))
        self.mints = [
            (_account("mint", address, n), rng.choice((6, 6, 6, 9)))
            for n in range(rng.randint(3, 25))
        ]

    def extend(self, count: int) -> None:
        """Derive signatures up to index `count` - 1."""
        for i in range(len(self.signatures), min(count, self.size)):
            sig = signature_at(self.address, i)
            self.signatures.append(sig)
            self.index[sig] = i

    async def find(self, signature: str) -> int | None:
        """The index of `signature`, deriving signatures page by page without blocking."""
        while signature not in self.index and len(self.signatures) < self.size:
            self.extend(len(self.signatures) + 1000)
            await asyncio.sleep(0)
        return self.index.get(signature)


def draw_source_and_fee(rng: random.Random) -> tuple[str, int]:
    """A transaction's DEX label and fee: the first two draws of every demo transaction."""
    return rng.choice(_DEXES), 5000 + rng.choice((0, 0, 825, 5000, 80_000))


def blank_transaction(
    wallet: _Wallet, signature: str, slot: int, timestamp: int, source: str, fee: int
) -> dict[str, Any]:
    """A transaction of `wallet` in Helius's enhanced shape, before its balance changes:
    what every demo transaction, history or live, starts from."""
    return {
        "description": "",
        "type": "SWAP",
        "source": source,
        "fee": fee,
        "feePayer": wallet.address,
        "signature": signature,
        "slot": slot,
        "timestamp": timestamp,
        "tokenTransfers": [],
        "nativeTransfers": [],
        "accountData": [],
        "transactionError": None,
        "instructions": [],
        "events": {},
    }


def _transaction(wallet: _Wallet, index: int) -> dict[str, Any]:
    """The `index`-th newest transaction: a pure function of (address, index)."""
    rng = random.Random(_digest("tx", wallet.address, index))
    source, fee = draw_source_and_fee(rng)
    slot = _GENESIS_SLOT - index * 7 - rng.randint(0, 6)
    timestamp = _GENESIS_TIME - index * 3 - rng.randint(0, 2)
    tx = blank_transaction(wallet, wallet.signatures[index], slot, timestamp, source, fee)
    roll = rng.random()
    if roll < 0.60:
        _swap(tx, wallet, rng)
    elif roll < 0.65:
        _swap(tx, wallet, rng)
        tx["transactionError"] = {"InstructionError": [3, {"Custom": 6001}]}
    elif roll < 0.90:
        _dust(tx, wallet, rng)
    elif roll < 0.95:
        _sol_transfer(tx, wallet, rng)
    else:
        _nft_buy(tx, wallet, rng)
    return tx


def _token_change(owner: str, account: str, mint: str, raw: int, decimals: int) -> dict[str, Any]:
    return {
        "userAccount": owner,
        "tokenAccount": account,
        "rawTokenAmount": {"tokenAmount": str(raw), "decimals": decimals},
        "mint": mint,
    }


def _token_transfer(
    source: str,
    target: str,
    source_account: str,
    target_account: str,
    mint: str,
    raw: int,
    decimals: int,
) -> dict[str, Any]:
    return {
        "fromTokenAccount": source_account,
        "toTokenAccount": target_account,
        "fromUserAccount": source,
        "toUserAccount": target,
        "tokenAmount": raw / 10**decimals,
        "mint": mint,
        "tokenStandard": "Fungible",
    }


def _swap(
    tx: dict[str, Any], wallet: _Wallet, rng: random.Random, *, distinct: bool = False
) -> None:
    """A swap in Helius's shape: SOL, USDC or USDT against a token, USDC for USDT or back,
    or token for token via SOL.

    Every variant draws the same random numbers in the same order, so the shapes only
    change assets: the transactions, and which of them are trades, stay as documented.
    A token for token may draw the same token twice, which nets to no trade; `distinct`
    (live ticks, which are always trades) draws the second from the others.
    """
    me = wallet.address
    pool = _account("pool", rng.randint(0, 40))
    mint, decimals = rng.choice(wallet.mints)
    token_raw = rng.randint(10**decimals // 100, 10**decimals * 5_000_000)
    kind = rng.random()
    quote = USDC_MINT if kind < 0.09 else USDT_MINT if kind < 0.15 else WSOL_MINT
    quote_decimals = KNOWN_DECIMALS[quote]
    quote_raw = (
        rng.randint(10**7, 40 * 10**9) if quote == WSOL_MINT else rng.randint(10**6, 5 * 10**9)
    )
    if kind < 0.03:  # stablecoin for stablecoin: USDT at a price within 0.3 % of USDC
        mint, decimals = USDT_MINT, KNOWN_DECIMALS[USDT_MINT]
        token_raw = quote_raw * (10_000 - token_raw % 30) // 10_000
    buying = rng.random() < 0.5
    my_token_account = _account("ata", me, mint)
    my_quote_account = _account("ata", me, quote)
    pool_token, pool_quote = _account("vault", pool, mint), _account("vault", pool, quote)
    rent = RENT if rng.random() < 0.3 else 0
    lamports = -tx["fee"]
    token_sign = 1 if buying else -1
    quote_sign = -token_sign
    if kind > 0.9:  # token for token, routed through SOL: the route nets out
        others = [m for m in wallet.mints if m[0] != mint] if distinct else []
        quote, quote_decimals = rng.choice(others or wallet.mints)
        quote_raw = rng.randint(10**quote_decimals, 10**quote_decimals * 1_000_000)
        pool_quote = _account("vault", pool, quote)
        my_quote_account = _account("ata", me, quote)
        route = rng.randint(10**8, 10**10)
        tx["tokenTransfers"] += [
            _token_transfer(pool, me, pool_quote, my_quote_account, WSOL_MINT, route, SOL_DECIMALS),
            _token_transfer(me, pool, my_quote_account, pool_quote, WSOL_MINT, route, SOL_DECIMALS),
        ]
    if quote == WSOL_MINT:
        lamports += quote_sign * quote_raw
        vault = {
            "account": pool_quote,
            "nativeBalanceChange": -quote_sign * quote_raw,
            "tokenBalanceChanges": [
                _token_change(pool, pool_quote, quote, -quote_sign * quote_raw, SOL_DECIMALS)
            ],
        }
        tx["nativeTransfers"].append(
            {"fromUserAccount": me, "toUserAccount": my_quote_account, "amount": quote_raw}
            if buying
            else {"fromUserAccount": my_quote_account, "toUserAccount": me, "amount": quote_raw}
        )
        mine_quote = {
            "account": my_quote_account,
            "nativeBalanceChange": 0,
            "tokenBalanceChanges": [],
        }
    else:
        vault = {
            "account": pool_quote,
            "nativeBalanceChange": 0,
            "tokenBalanceChanges": [
                _token_change(pool, pool_quote, quote, -quote_sign * quote_raw, quote_decimals)
            ],
        }
        mine_quote = {
            "account": my_quote_account,
            "nativeBalanceChange": 0,
            "tokenBalanceChanges": [
                _token_change(me, my_quote_account, quote, quote_sign * quote_raw, quote_decimals)
            ],
        }
    account_rent = rent if buying else -rent  # opened to receive, or closed after selling
    lamports -= account_rent
    tx["accountData"] = [
        {"account": me, "nativeBalanceChange": lamports, "tokenBalanceChanges": []},
        {
            "account": my_token_account,
            "nativeBalanceChange": account_rent,
            "tokenBalanceChanges": [
                _token_change(me, my_token_account, mint, token_sign * token_raw, decimals)
            ],
        },
        mine_quote,
        {
            "account": pool_token,
            "nativeBalanceChange": 0,
            "tokenBalanceChanges": [
                _token_change(pool, pool_token, mint, -token_sign * token_raw, decimals)
            ],
        },
        vault,
    ]
    give = (me, pool, my_quote_account, pool_quote, quote, quote_raw, quote_decimals)
    take = (pool, me, pool_token, my_token_account, mint, token_raw, decimals)
    if not buying:
        give = (me, pool, my_token_account, pool_token, mint, token_raw, decimals)
        take = (pool, me, pool_quote, my_quote_account, quote, quote_raw, quote_decimals)
    tx["tokenTransfers"] += [_token_transfer(*give), _token_transfer(*take)]
    tx["type"] = rng.choice(("SWAP", "SWAP", "SWAP", "SWAP", "UNKNOWN", "TRANSFER"))
    if rng.random() < 0.3:  # most real swaps carry no events.swap
        tx["events"] = {
            "swap": {
                "nativeInput": None,
                "nativeOutput": None,
                "tokenInputs": [],
                "tokenOutputs": [],
                "innerSwaps": [],
            }
        }
    tx["description"] = f"{me} swapped"


def _dust(tx: dict[str, Any], wallet: _Wallet, rng: random.Random) -> None:
    """Spam: a stranger sends 1 lamport to many wallets, this one among them."""
    spammer = _account("spam", rng.randint(0, 50))
    receivers = [wallet.address] + [
        _account("victim", n) for n in rng.sample(range(200), rng.randint(3, 12))
    ]
    tx.update(type="TRANSFER", source="SYSTEM_PROGRAM", feePayer=spammer)
    tx["nativeTransfers"] = [
        {"fromUserAccount": spammer, "toUserAccount": r, "amount": 1} for r in receivers
    ]
    tx["accountData"] = [
        {
            "account": spammer,
            "nativeBalanceChange": -tx["fee"] - len(receivers),
            "tokenBalanceChanges": [],
        }
    ] + [{"account": r, "nativeBalanceChange": 1, "tokenBalanceChanges": []} for r in receivers]


def _sol_transfer(tx: dict[str, Any], wallet: _Wallet, rng: random.Random) -> None:
    """The wallet sends SOL to someone: one leg only, so no trade."""
    friend = _account("friend", rng.randint(0, 5))
    amount = rng.randint(10**7, 10**10)
    tx.update(type="TRANSFER", source="SYSTEM_PROGRAM")
    tx["nativeTransfers"] = [
        {"fromUserAccount": wallet.address, "toUserAccount": friend, "amount": amount}
    ]
    tx["accountData"] = [
        {
            "account": wallet.address,
            "nativeBalanceChange": -amount - tx["fee"],
            "tokenBalanceChanges": [],
        },
        {"account": friend, "nativeBalanceChange": amount, "tokenBalanceChanges": []},
    ]


def _nft_buy(tx: dict[str, Any], wallet: _Wallet, rng: random.Random) -> None:
    """SOL for an NFT (amount 1, 0 decimals): an NFT moving makes nothing a trade."""
    me, seller = wallet.address, _account("seller", rng.randint(0, 50))
    nft, price = _account("nft", rng.randint(0, 5000)), rng.randint(10**8, 10**11)
    mine, theirs = _account("ata", me, nft), _account("ata", seller, nft)
    tx.update(type="NFT_SALE", source="MAGIC_EDEN")
    tx["nativeTransfers"] = [{"fromUserAccount": me, "toUserAccount": seller, "amount": price}]
    tx["tokenTransfers"] = [
        {
            "fromTokenAccount": theirs,
            "toTokenAccount": mine,
            "fromUserAccount": seller,
            "toUserAccount": me,
            "tokenAmount": 1,
            "mint": nft,
            "tokenStandard": "NonFungible",
        }
    ]
    tx["accountData"] = [
        {
            "account": me,
            "nativeBalanceChange": -price - tx["fee"] - RENT,
            "tokenBalanceChanges": [],
        },
        {
            "account": mine,
            "nativeBalanceChange": RENT,
            "tokenBalanceChanges": [_token_change(me, mine, nft, 1, 0)],
        },
        {"account": seller, "nativeBalanceChange": price, "tokenBalanceChanges": []},
        {
            "account": theirs,
            "nativeBalanceChange": 0,
            "tokenBalanceChanges": [_token_change(seller, theirs, nft, -1, 0)],
        },
    ]
