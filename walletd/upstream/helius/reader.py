"""Helius enhanced transaction -> Trade, from the wallet's net balance changes (SPEC §4).

The wallet's net change per asset decides everything: what went down was sold, what
went up was bought, route tokens net to zero (which collapses multi-hop swaps), and
`type` and `events.swap` are not trusted (real swaps arrive typed UNKNOWN or TRANSFER;
`events.swap` is missing on most PUMP_AMM/METEORA swaps and describes only the last hop
of two-hop RAYDIUM routes). Amounts are integers of base units, never floats.

Upstream JSON is untrusted: every accessor checks types, and `parse_transaction` returns
None rather than raise on anything it cannot read. Identifiers end up on the wire (a
signature is the SSE `id:` line), so a transaction whose signature is not base58 of 64
bytes, or whose mints or token accounts of the wallet are not base58 of 32 bytes, is
skipped whole and logged (SPEC §4): a forged string is never streamed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from walletd.trades.ledger import MAX_DECIMALS, BalanceChanges, trade_of
from walletd.trades.model import Trade
from walletd.trades.solana import (
    SOL_DECIMALS,
    USDC_MINT,
    USDT_MINT,
    WSOL_MINT,
    is_address,
    is_signature,
)

log = logging.getLogger(__name__)

KNOWN_DECIMALS = {WSOL_MINT: SOL_DECIMALS, USDC_MINT: 6, USDT_MINT: 6}
_INTEGER = re.compile(r"-?[0-9]{1,60}")
_LOGGED_CHARS = 100  # of an untrusted value, escaped: enough to recognise it, no more


class UntrustedValue(ValueError):
    """An identifier from the upstream that is not what it claims to be."""

    def __init__(self, field: str, value: object) -> None:
        super().__init__(field)
        self.field = field
        self.value = value


def parse_transaction(tx: object, wallet: str, *, position: int | None = None) -> Trade | None:
    """The trade `tx` is for `wallet`, or None (not a swap, failed, unreadable, forged).

    Never raises. A forged identifier is logged as a warning with `position` (the
    transaction's index in its page) and the value escaped and cut short, never raw;
    other data that does not fit is logged at debug level and skipped.
    """
    try:
        return _parse(tx, wallet)
    except UntrustedValue as exc:
        log.warning(
            "untrusted_transaction",
            extra={
                "position": position,
                "field": exc.field,
                "value": ascii(exc.value)[:_LOGGED_CHARS],
            },
        )
        return None
    except (ArithmeticError, ValueError, TypeError, RecursionError):  # last-resort net
        log.debug("unparseable_transaction", exc_info=True)
        return None


def signature_of(value: object) -> str:
    """`value` if it is a transaction signature (base58, 64 bytes); else UntrustedValue."""
    if isinstance(value, str) and is_signature(value):
        return value
    raise UntrustedValue("signature", value)


def _address(field: str, value: object) -> str:
    """`value` if it is an address (base58, 32 bytes); else UntrustedValue."""
    if isinstance(value, str) and is_address(value):
        return value
    raise UntrustedValue(field, value)


def _parse(tx: object, wallet: str) -> Trade | None:
    if not isinstance(tx, Mapping) or not isinstance(wallet, str):
        return None
    if tx.get("transactionError") is not None:
        return None
    signature = signature_of(tx.get("signature"))
    fee = _integer(tx.get("fee"))
    changes = BalanceChanges(
        signature=signature,
        slot=_counter(tx.get("slot")),
        timestamp=_counter(tx.get("timestamp")),
        dex=_text(tx.get("source")),
    )
    if fee is not None and fee >= 0 and tx.get("feePayer") == wallet:
        changes.fee_paid = fee  # the network fee is not part of the trade
    account_data = tx.get("accountData")
    if isinstance(account_data, list) and account_data:
        _from_account_data(changes, account_data, _dicts(tx.get("nativeTransfers")), wallet)
    else:
        _from_transfers(
            changes, _dicts(tx.get("tokenTransfers")), _dicts(tx.get("nativeTransfers")), wallet
        )
        changes.lamports -= changes.fee_paid or 0  # transfer lists leave the fee out
    trade = trade_of(changes)
    if trade is not None:
        _cross_check(tx, wallet, trade)
    return trade


def _from_account_data(
    ledger: BalanceChanges,
    account_data: list[Any],
    native_transfers: list[Mapping[str, Any]],
    wallet: str,
) -> None:
    """Balances from `accountData`, the authoritative per-account deltas.

    SOL is the wallet's lamports plus those of its own token accounts: that counts wrapped
    SOL, and makes the rent of a token account the wallet opens or closes net to zero.
    """
    own: set[str] = set()
    for entry in _dicts(account_data):
        for change in _dicts(entry.get("tokenBalanceChanges")):
            if change.get("userAccount") != wallet:
                continue
            mint, raw_amount = _address("mint", change.get("mint")), change.get("rawTokenAmount")
            if not isinstance(raw_amount, Mapping):
                continue
            raw, decimals = (
                _integer(raw_amount.get("tokenAmount")),
                _integer(raw_amount.get("decimals")),
            )
            if raw is None or decimals is None or not 0 <= decimals <= MAX_DECIMALS:
                continue
            account = entry.get("account") or change.get("tokenAccount")
            if account is not None:
                own.add(_address("account", account))
            if mint != WSOL_MINT:  # wrapped SOL is counted through the account's lamports
                ledger.add_token(mint, raw, decimals)
    funded_by_others = {
        t.get("toUserAccount")
        for t in native_transfers
        if t.get("toUserAccount") in own and t.get("fromUserAccount") != wallet
    }
    for entry in _dicts(account_data):
        account = entry.get("account")
        lamports = _integer(entry.get("nativeBalanceChange"))
        if lamports is None:
            continue
        if account == wallet or (account in own and account not in funded_by_others):
            ledger.lamports += lamports


def _from_transfers(
    ledger: BalanceChanges,
    token_transfers: list[Mapping[str, Any]],
    native_transfers: list[Mapping[str, Any]],
    wallet: str,
) -> None:
    """Balances from transfer lists, for records that carry no `accountData`.

    Transfer amounts are JSON floats: each is taken as the exact decimal its text shows.
    Token decimals are then unknown for non-quote mints; the most fractional digits seen
    is used (a lower bound).
    """
    ui: dict[str, Decimal] = {}
    digits: dict[str, int] = {}
    own: set[str] = set()
    for transfer in token_transfers:
        amount = _ui_amount(transfer.get("tokenAmount"))
        if amount is None:
            continue
        sign = 0
        if transfer.get("fromUserAccount") == wallet:
            sign -= 1
            own.update(_optional_address(transfer.get("fromTokenAccount")))
        if transfer.get("toUserAccount") == wallet:
            sign += 1
            own.update(_optional_address(transfer.get("toTokenAccount")))
        if sign:
            mint = _address("mint", transfer.get("mint"))
            ui[mint] = ui.get(mint, Decimal(0)) + sign * amount
            exponent = amount.as_tuple().exponent
            places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
            digits[mint] = max(digits.get(mint, 0), places)
    for transfer in native_transfers:
        lamports = _integer(transfer.get("amount"))
        if lamports is None:
            continue
        source, target = transfer.get("fromUserAccount"), transfer.get("toUserAccount")
        if source == wallet and target not in own:  # wrapping into its own account is no trade
            ledger.lamports -= lamports
        if target == wallet and source not in own:
            ledger.lamports += lamports
    for mint, amount in ui.items():
        decimals = KNOWN_DECIMALS.get(mint, digits[mint])
        if decimals > MAX_DECIMALS:
            continue
        raw = int(amount.scaleb(decimals))
        if mint == WSOL_MINT:
            ledger.lamports += raw
        else:
            ledger.add_token(mint, raw, decimals)


def _cross_check(tx: Mapping[str, Any], wallet: str, trade: Trade) -> None:
    """Log when `events.swap` says SOL moved the other way: a hint, never a correction."""
    events = tx.get("events")
    swap = events.get("swap") if isinstance(events, Mapping) else None
    if not isinstance(swap, Mapping):
        return
    native_in, native_out = swap.get("nativeInput"), swap.get("nativeOutput")
    says_sold_sol = isinstance(native_in, Mapping) and native_in.get("account") == wallet
    says_bought_sol = isinstance(native_out, Mapping) and native_out.get("account") == wallet
    if (says_sold_sol and trade.token_out.mint == WSOL_MINT) or (
        says_bought_sol and trade.token_in.mint == WSOL_MINT
    ):
        log.debug("swap_event_disagrees", extra={"signature": trade.signature})


def _optional_address(value: object) -> tuple[str, ...]:
    """A token account the record may leave out (none), else it must be an address."""
    return () if value is None else (_address("account", value),)


def _dicts(value: object) -> list[Mapping[str, Any]]:
    """The mappings in a list; a lone mapping counts as a list of one (seen upstream)."""
    if isinstance(value, Mapping):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, Mapping)]
    return []


def _text(value: object) -> str | None:
    """An identifier (signature, mint, DEX name): non-empty ASCII, else None."""
    return value if isinstance(value, str) and value and value.isascii() else None


def _counter(value: object) -> int | None:
    """A slot or unix time: an integer in 0..2**63-1, else None."""
    number = _integer(value)
    return number if number is not None and 0 <= number < 2**63 else None


def _integer(value: object) -> int | None:
    """An exact integer from a JSON int or an integer string; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        return int(value)
    return None


def _ui_amount(value: object) -> Decimal | None:
    """A non-negative finite decimal from a JSON number or numeric string."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        amount = Decimal(repr(value) if isinstance(value, float) else str(value))
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount < 0 or abs(amount.adjusted()) > 40:
        return None
    return amount
