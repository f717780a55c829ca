"""Demo (Helius-shaped) transactions as standard RPC `getTransaction` results (jsonParsed).

So that the fake RPC provider serves the same synthetic histories as the fake Helius and
the demo source, and `parse_rpc_transaction(to_rpc(tx), w) == parse_transaction(tx, w)`.

From `accountData`: the fee payer is account 0, then every account named there, then the
programs; `preBalances` / `postBalances` from a base balance and `nativeBalanceChange`; a
token account whose lamports rise by the rent of a standard SPL account was opened (no pre
token entry), one whose lamports fall by it was closed (no post entry); `nativeTransfers`
become parsed system transfers (who funded what); `source` becomes the outer instruction's
program (the first id DEX_PROGRAMS gives that name; none for SYSTEM_PROGRAM, MAGIC_EDEN...).
A failed transaction moves only the fee, as on chain.

Not represented exactly: records without `accountData` (transfer lists only) have no
balances to convert and raise ValueError; the demo generator never emits them. The
balances themselves are synthetic (only the changes are the demo's).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import base58

from walletd.upstream.demo import RENT
from walletd.upstream.rpc.reader import DEX_PROGRAMS

SYSTEM_PROGRAM = base58.b58encode(bytes(32)).decode()  # the all-zero key
PROGRAM_OF_SOURCE: dict[str, str] = {}
for _program, (_name, _priority) in DEX_PROGRAMS.items():
    PROGRAM_OF_SOURCE.setdefault(_name, _program)
_BASE_LAMPORTS = 100 * 10**9


def to_rpc(tx: Mapping[str, Any]) -> dict[str, Any]:
    """The jsonParsed getTransaction result equivalent to demo transaction `tx`."""
    account_data = tx.get("accountData")
    if not isinstance(account_data, list) or not account_data:
        raise ValueError("only records with accountData can be converted")
    keys: list[str] = [tx["feePayer"]]
    change: dict[str, int] = {}
    tokens: list[tuple[str, Mapping[str, Any]]] = []  # (token account, its change)
    for entry in account_data:
        account = entry["account"]
        if account not in keys:
            keys.append(account)
        change[account] = change.get(account, 0) + int(entry["nativeBalanceChange"])
        tokens += [(account, t) for t in entry.get("tokenBalanceChanges") or []]
    program = PROGRAM_OF_SOURCE.get(tx.get("source") or "")
    programs = [p for p in (SYSTEM_PROGRAM, program) if p is not None]
    keys += [p for p in programs if p not in keys]

    pre, post = [], []
    for account in keys:
        delta = change.get(account, 0)
        if delta == RENT and _is_token_account(account, tokens):
            before = 0  # opened in this transaction
        elif delta == -RENT and _is_token_account(account, tokens):
            before = RENT  # closed in this transaction
        else:
            before = _BASE_LAMPORTS + max(0, -delta)
        pre.append(before)
        post.append(before + delta)

    pre_tokens: list[dict[str, Any]] = []
    post_tokens: list[dict[str, Any]] = []
    for account, token in tokens:
        index = keys.index(account)
        raw = int(token["rawTokenAmount"]["tokenAmount"])
        decimals = int(token["rawTokenAmount"]["decimals"])
        delta = change.get(account, 0)
        if delta == RENT and raw >= 0:
            amounts: tuple[int | None, int | None] = (None, raw)
        elif delta == -RENT and raw <= 0:
            amounts = (-raw, None)
        else:
            base = 10 ** (decimals + 6) + max(0, -raw)
            amounts = (base, base + raw)
        for side, amount in zip((pre_tokens, post_tokens), amounts, strict=True):
            if amount is not None:
                side.append(
                    _token_balance(index, token["mint"], token["userAccount"], amount, decimals)
                )

    failed = tx.get("transactionError") is not None
    if failed:  # a failed transaction only pays its fee
        post = list(pre)
        post[0] -= int(tx["fee"])
        post_tokens = [dict(entry) for entry in pre_tokens]
    transfers = [
        {
            "parsed": {
                "info": {
                    "destination": t["toUserAccount"],
                    "lamports": t["amount"],
                    "source": t["fromUserAccount"],
                },
                "type": "transfer",
            },
            "program": "system",
            "programId": SYSTEM_PROGRAM,
            "stackHeight": 2,
        }
        for t in tx.get("nativeTransfers") or []
    ]
    outer: list[dict[str, Any]] = [
        {"accounts": [], "data": "", "programId": program or SYSTEM_PROGRAM, "stackHeight": None}
    ]
    return {
        "blockTime": tx.get("timestamp"),
        "meta": {
            "computeUnitsConsumed": 0,
            "err": tx.get("transactionError"),
            "fee": tx["fee"],
            "innerInstructions": []
            if failed or not transfers
            else [{"index": 0, "instructions": transfers}],
            "logMessages": [],
            "postBalances": post,
            "postTokenBalances": post_tokens,
            "preBalances": pre,
            "preTokenBalances": pre_tokens,
            "rewards": [],
            "status": {"Err": tx["transactionError"]} if failed else {"Ok": None},
        },
        "slot": tx.get("slot"),
        "transaction": {
            "message": {
                "accountKeys": [
                    {
                        "pubkey": key,
                        "signer": i == 0,
                        "source": "transaction",
                        "writable": key not in programs,
                    }
                    for i, key in enumerate(keys)
                ],
                "instructions": outer,
                "recentBlockhash": SYSTEM_PROGRAM,
            },
            "signatures": [tx["signature"]],
        },
        "version": "legacy",
    }


def _is_token_account(account: str, tokens: list[tuple[str, Mapping[str, Any]]]) -> bool:
    return any(a == account for a, _ in tokens)


def _token_balance(index: int, mint: str, owner: str, amount: int, decimals: int) -> dict[str, Any]:
    text = str(amount)
    ui = text.rjust(decimals + 1, "0")
    ui_string = f"{ui[:-decimals]}.{ui[-decimals:]}".rstrip("0").rstrip(".") if decimals else text
    return {
        "accountIndex": index,
        "mint": mint,
        "owner": owner,
        "uiTokenAmount": {
            "amount": text,
            "decimals": decimals,
            "uiAmount": float(ui_string),  # as providers send it; the reader never reads it
            "uiAmountString": ui_string,
        },
    }
