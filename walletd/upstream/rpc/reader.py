"""Standard Solana JSON-RPC transaction -> the wallet's BalanceChanges (SPEC §4, `rpc`).

Input is one `getTransaction` result (or one full entry of `getTransactionsForAddress`):
`{slot, blockTime, transaction, meta, version}` in any of the three encodings a provider
returns: `jsonParsed` (account keys are objects, lookup-table keys included), `json`
(plain key strings; v0 lookup-table keys in `meta.loadedAddresses`, writable then
readonly, after the static keys) and `base64` / `base58` (the wire transaction, decoded
here by `decode_transaction`).

The wallet's balances: its lamports (its index among the account keys) plus those of its
own token accounts (a pre or post token balance entry with `owner == wallet`), so wrapped
SOL counts and the rent of a token account it opened or closed nets out, as in the Helius
reader; token changes from the entries it owns, a missing side being zero, amounts from
`uiTokenAmount.amount` and `decimals` (never the float `uiAmount`). `dex` is named from
the programs the transaction invoked, outer and inner instructions: see DEX_PROGRAMS.

Upstream JSON is untrusted: nothing raises out of `read_rpc_transaction`; what cannot be
read is logged at debug level and gives None.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import base58

from walletd.trades.ledger import MAX_DECIMALS, BalanceChanges, trade_of
from walletd.trades.model import Trade
from walletd.trades.solana import WSOL_MINT, is_address, is_signature
from walletd.upstream.rpc.message import decode_transaction

log = logging.getLogger(__name__)

# Program id -> (Helius `source` name, priority). An aggregator (priority 2) wins over the
# pools it routed through (priority 1). Every id here is invoked by a real transaction of
# tests/data/rpc, and tests/test_rpc_reader.py names which one; a venue no sample shows
# is left out rather than guessed.
AGGREGATOR, POOL = 2, 1
DEX_PROGRAMS: dict[str, tuple[str, int]] = {
    # Jupiter v6, v4 and v2 routers
    "JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4": ("JUPITER", AGGREGATOR),
    "JUP4Fb2cqiRUcaTHdrPC8h2gNsA2ETXiPDD33WcGuJB": ("JUPITER", AGGREGATOR),
    "JUP2jxvXaqu7NQY1GmNF4m1vodw12LVXYxbFL2uJvfo": ("JUPITER", AGGREGATOR),
    # OKX DEX router
    "6m2CDdhRgxpH4WjvdzxAYbGxwdGUz5MziiL5jek2kBma": ("OKX_DEX_ROUTER", AGGREGATOR),
    # Raydium AMM v4, CLMM, CPMM, stable AMM, LaunchLab, and its own router
    "675kPX9MHTjS2zt1qfr1NYHuzeLXfQM9H24wFSUt1Mp8": ("RAYDIUM", POOL),
    "CAMMCzo5YL8w4VFF8KVHrK22GGUsp5VTaW7grrKgrWqK": ("RAYDIUM", POOL),
    "CPMMoo8L3F4NbTegBCKVNunggL7H1ZpdTHKxQB5qKP1C": ("RAYDIUM", POOL),
    "5quBtoiQqxF9Jv6KYKctB59NT3gtJD2Y65kdnB1Uev3h": ("RAYDIUM", POOL),
    "LanMV9sAd7wArD4vJFi2qDdfnVhFxYSUg6eADduJ3uj": ("RAYDIUM", POOL),
    "routeUGWgWzqBWFcrCfv8tritsqukccJPu3q5GPP3xS": ("RAYDIUM", POOL),
    # Orca Whirlpool, token-swap v1 and v2
    "whirLbMiicVdio4qvUfM5KAg6Ct8VwpYzGff3uctyCc": ("ORCA", POOL),
    "DjVE6JNiYqPL2QXyCUUh8rNjHrbz9hXHNYt99MQ59qw1": ("ORCA", POOL),
    "9W959DqEETiGZocYWCQPaJ6sBmUzgfxXfqGeTEdp3aQP": ("ORCA", POOL),
    # Meteora DLMM, DAMM (pools) and DAMM v2
    "LBUZKhRxPF3XUpBCjp4YzTKgLccjZhTSDM9YuVaPwxo": ("METEORA", POOL),
    "Eo7WjKq67rjJQSZxS6z3YkapzY3eMj6Xy8X5EQVn5UaB": ("METEORA", POOL),
    "cpamdpZCGKUy5JxQXB4dcpGPiikHawvSWAd6mEn1sGG": ("METEORA", POOL),
    # pump.fun bonding curve and PumpSwap
    "6EF8rrecthR5Dkzon8Nwu78hRvfCKubJ14M5uBEwF6P": ("PUMP_FUN", POOL),
    "pAMMBay6oceH9fJKBRHGP5D4bD4sWpmSwMn52FMfXEA": ("PUMP_AMM", POOL),
    # order books and other pools
    "PhoeNiXZ8ByJGLkxNfZRnkUfjvmuYqLR89jjFHGqdXY": ("PHOENIX", POOL),
    "FLUXubRmkEi2q6K3Y9kBPg9248ggaZVsoSFhtJHSrm1X": ("FLUXBEAM", POOL),
}

_BASE58_DECODE_LIMIT = 1_000_000  # a wire transaction is at most 1232 bytes; be generous


def rpc_signature(tx: Mapping[str, Any]) -> object:
    """A getTransaction result's signature (the first of the transaction's); a failed
    transaction's stand-in (upstream/pipeline.py `placeholder`) keeps it at the top."""
    if "signature" in tx:
        return tx["signature"]
    transaction = tx.get("transaction")
    if isinstance(transaction, Mapping):
        signatures = transaction.get("signatures")
        if isinstance(signatures, list) and signatures:
            return signatures[0]
    return None


def parse_rpc_transaction(tx: object, wallet: str, *, position: int | None = None) -> Trade | None:
    """The trade `tx` (a getTransaction result) is for `wallet`, or None. Never raises;
    `position` (in its page) is for the log line of a transaction that is skipped."""
    changes = read_rpc_transaction(tx, wallet, position=position)
    return None if changes is None else trade_of(changes)


def read_rpc_transaction(
    tx: object, wallet: str, *, position: int | None = None
) -> BalanceChanges | None:
    """What `tx` (a getTransaction result) did to `wallet`'s balances, or None.

    None for failed transactions and for anything that cannot be read or fails the
    identifier checks (logged at debug level). Never raises.
    """
    try:
        return _read(tx, wallet)
    except (ArithmeticError, ValueError, TypeError, RecursionError):  # last-resort net
        log.debug("unparseable_rpc_transaction", extra={"position": position}, exc_info=True)
        return None


@dataclass(slots=True)
class _Message:
    signature: str
    keys: list[str]
    programs: list[str]  # outer then inner, invocation order, repeats allowed
    parsed: list[Mapping[str, Any]]  # jsonParsed instructions (outer and inner), else []


def _read(tx: object, wallet: str) -> BalanceChanges | None:
    if not isinstance(tx, Mapping) or not isinstance(wallet, str) or not is_address(wallet):
        return None
    meta = tx.get("meta")
    if not isinstance(meta, Mapping):
        return _skip("no_meta")
    if meta.get("err") is not None or _failed_status(meta.get("status")):
        return None
    message = _message(tx.get("transaction"), meta)
    if message is None:
        return _skip("unreadable_message")
    if not is_signature(message.signature):
        return _skip("bad_signature")
    pre, post = _lamports(meta.get("preBalances")), _lamports(meta.get("postBalances"))
    if pre is None or post is None or not len(pre) == len(post) == len(message.keys):
        return _skip("balances_do_not_match_keys", message.signature)
    changes = BalanceChanges(
        signature=message.signature,
        slot=_counter(tx.get("slot")),
        timestamp=_counter(tx.get("blockTime")),
        dex=dex_of(message.programs),
    )
    fee = _integer(meta.get("fee"))
    if message.keys[0] == wallet and fee is not None and fee >= 0:
        changes.fee_paid = fee  # the fee payer is account 0
    own = _token_changes(changes, meta, wallet, len(message.keys))
    if own is None:
        return _skip("bad_token_balance", message.signature)
    own -= _funded_by_others(message.parsed, message.keys, own, wallet)
    for index, key in enumerate(message.keys):
        if key == wallet or index in own:
            changes.lamports += post[index] - pre[index]
    return changes


def dex_of(programs: Sequence[str]) -> str | None:
    """The DEX named by the invoked programs: the highest priority, then the first seen."""
    best: tuple[str, int] | None = None
    for program in programs:
        known = DEX_PROGRAMS.get(program)
        if known is not None and (best is None or known[1] > best[1]):
            best = known
    return None if best is None else best[0]


def _skip(reason: str, signature: str | None = None) -> BalanceChanges | None:
    """Log why a transaction is skipped; always None (for `return _skip(...)`)."""
    log.debug("rpc_transaction_skipped", extra={"reason": reason, "signature": signature})
    return None


def _failed_status(status: object) -> bool:
    return isinstance(status, Mapping) and status.get("Err") is not None


# --- the message, in each encoding --------------------------------------------------------


def _message(transaction: object, meta: Mapping[str, Any]) -> _Message | None:
    if isinstance(transaction, list) and len(transaction) == 2:  # [data, encoding]
        return _binary_message(transaction[0], transaction[1], meta)
    if not isinstance(transaction, Mapping):
        return None
    signatures, message = transaction.get("signatures"), transaction.get("message")
    if not isinstance(signatures, list) or not signatures or not isinstance(message, Mapping):
        return None
    signature = signatures[0]
    raw_keys = message.get("accountKeys")
    if not isinstance(signature, str) or not isinstance(raw_keys, list) or not raw_keys:
        return None
    if all(isinstance(key, Mapping) for key in raw_keys):  # jsonParsed: lookup keys included
        keys = [key.get("pubkey") for key in raw_keys]
    else:  # json: static keys, then the loaded ones
        loaded = _loaded_addresses(meta)
        if loaded is None:
            return None
        keys = [*raw_keys, *loaded]
    if not all(isinstance(key, str) for key in keys):
        return None
    outer = _dict_list(message.get("instructions"))
    if outer is None:
        return None
    inner = _inner_instructions(meta)
    if inner is None:
        return None
    programs = []
    for instruction in [*outer, *inner]:
        program = _program_of(instruction, keys)
        if program is None:
            return None
        programs.append(program)
    parsed = [i for i in [*outer, *inner] if isinstance(i.get("parsed"), Mapping)]
    return _Message(signature, keys, programs, parsed)


def _binary_message(data: object, encoding: object, meta: Mapping[str, Any]) -> _Message | None:
    if not isinstance(data, str):
        return None
    try:
        if encoding == "base64":
            raw = base64.b64decode(data, validate=True)
        elif encoding == "base58" and len(data) <= _BASE58_DECODE_LIMIT:
            raw = base58.b58decode(data)
        else:
            return None
        decoded = decode_transaction(raw)
    except (binascii.Error, ValueError):  # MessageError is a ValueError
        return None
    loaded = _loaded_addresses(meta)
    inner = _inner_instructions(meta)
    if not decoded.signatures or loaded is None or inner is None:
        return None
    keys = [*decoded.account_keys, *loaded]
    programs = []
    for index in decoded.program_indexes:
        if index >= len(keys):
            return None
        programs.append(keys[index])
    for instruction in inner:
        program = _program_of(instruction, keys)
        if program is None:
            return None
        programs.append(program)
    return _Message(decoded.signatures[0], keys, programs, [])


def _loaded_addresses(meta: Mapping[str, Any]) -> list[Any] | None:
    """meta.loadedAddresses writable then readonly; [] when absent (legacy)."""
    loaded = meta.get("loadedAddresses")
    if loaded is None:
        return []
    if not isinstance(loaded, Mapping):
        return None
    writable, readonly = loaded.get("writable", []), loaded.get("readonly", [])
    if not isinstance(writable, list) or not isinstance(readonly, list):
        return None
    return [*writable, *readonly]


def _inner_instructions(meta: Mapping[str, Any]) -> list[Mapping[str, Any]] | None:
    groups = meta.get("innerInstructions")
    if groups is None:
        return []
    if not isinstance(groups, list):
        return None
    out: list[Mapping[str, Any]] = []
    for group in groups:
        if not isinstance(group, Mapping):
            return None
        instructions = _dict_list(group.get("instructions"))
        if instructions is None:
            return None
        out.extend(instructions)
    return out


def _program_of(instruction: Mapping[str, Any], keys: list[str]) -> str | None:
    program = instruction.get("programId")
    if isinstance(program, str):
        return program
    index = _integer(instruction.get("programIdIndex"))
    if index is not None and 0 <= index < len(keys):
        return keys[index]
    return None


# --- balances -----------------------------------------------------------------------------


def _token_changes(
    changes: BalanceChanges, meta: Mapping[str, Any], wallet: str, key_count: int
) -> set[int] | None:
    """Add the wallet's token changes; return the indexes of its token accounts.

    Entries owned by the wallet count: post entries add, pre entries subtract, so a
    missing side is zero. None when an entry of the wallet cannot be read.
    """
    own: set[int] = set()
    for side, sign in (("preTokenBalances", -1), ("postTokenBalances", 1)):
        entries = meta.get(side)
        if entries is None:
            continue
        if not isinstance(entries, list):
            return None
        for entry in entries:
            if not isinstance(entry, Mapping) or entry.get("owner") != wallet:
                continue
            read = _token_entry(entry, key_count)
            if read is None:
                return None
            index, mint, raw, decimals = read
            own.add(index)
            if mint != WSOL_MINT:  # wrapped SOL is counted through the account's lamports
                changes.add_token(mint, sign * raw, decimals)
    return own


def _token_entry(entry: Mapping[str, Any], key_count: int) -> tuple[int, str, int, int] | None:
    index, mint, amount = entry.get("accountIndex"), entry.get("mint"), entry.get("uiTokenAmount")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < key_count:
        return None
    if not isinstance(mint, str) or not is_address(mint) or not isinstance(amount, Mapping):
        return None
    raw, decimals = amount.get("amount"), amount.get("decimals")
    if not isinstance(raw, str) or not raw.isascii() or not raw.isdigit() or len(raw) > 60:
        return None
    if not isinstance(decimals, int) or isinstance(decimals, bool):
        return None
    if not 0 <= decimals <= MAX_DECIMALS:
        return None
    return index, mint, int(raw), decimals


def _funded_by_others(
    parsed: list[Mapping[str, Any]], keys: list[str], own: set[int], wallet: str
) -> set[int]:
    """Token accounts of the wallet whose lamports came from someone else.

    A relayer or the counterparty may open the wallet's token account; that rent is not
    the wallet's, so its lamports are left out (as the Helius reader does from
    nativeTransfers). Only jsonParsed instructions say who paid; other encodings count
    every own token account.
    """
    own_keys = {keys[i]: i for i in own}
    out: set[int] = set()
    for instruction in parsed:
        if instruction.get("program") != "system":
            continue
        body = instruction["parsed"]
        info = body.get("info")
        if not isinstance(info, Mapping):
            continue
        target = info.get("newAccount", info.get("destination"))
        if body.get("type") in ("createAccount", "createAccountWithSeed", "transfer"):
            if target in own_keys and info.get("source") != wallet:
                out.add(own_keys[target])
    return out


def _lamports(value: object) -> list[int] | None:
    if not isinstance(value, list):
        return None
    out = []
    for item in value:
        number = _integer(item)
        if number is None or not 0 <= number < 2**64:
            return None
        out.append(number)
    return out


def _dict_list(value: object) -> list[Mapping[str, Any]] | None:
    if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
        return None
    return value


def _counter(value: object) -> int | None:
    number = _integer(value)
    return number if number is not None and 0 <= number < 2**63 else None


def _integer(value: object) -> int | None:
    """An exact JSON integer (bools and floats refused)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None
