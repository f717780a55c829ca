"""Trade values (SPEC §1 trade object) and exact amount formatting."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Any

from walletd.trades.solana import USDC_MINT, USDT_MINT, WSOL_MINT

QUOTE_SYMBOLS = {WSOL_MINT: "SOL", USDC_MINT: "USDC", USDT_MINT: "USDT"}
# Quote rank decides buy/sell: stablecoins above SOL above every other token (SPEC §1).
QUOTE_RANK = {USDC_MINT: 2, USDT_MINT: 2, WSOL_MINT: 1}


def rank(mint: str) -> int:
    return QUOTE_RANK.get(mint, 0)


def format_units(raw: int, decimals: int) -> str:
    """`raw` base units as an exact plain decimal string in UI units: 1500000000, 9 -> '1.5'."""
    with localcontext(prec=200):  # exact for any amount the parser accepts
        value = Decimal(raw).scaleb(-decimals)
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


@dataclass(frozen=True, slots=True)
class TokenAmount:
    """An amount of one asset in base units, exact."""

    mint: str
    raw: int
    decimals: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "mint": self.mint,
            "symbol": QUOTE_SYMBOLS.get(self.mint),
            "amount": format_units(self.raw, self.decimals),
            "decimals": self.decimals,
        }


@dataclass(frozen=True, slots=True)
class Trade:
    """One swap seen from the wallet: what it gave (`token_in`) and what it received."""

    signature: str
    slot: int | None
    timestamp: int | None
    dex: str | None
    token_in: TokenAmount
    token_out: TokenAmount
    fee_lamports: int | None

    @property
    def action(self) -> str:
        gave, got = rank(self.token_in.mint), rank(self.token_out.mint)
        return "buy" if gave > got else "sell" if got > gave else "swap"

    def to_dict(self) -> dict[str, Any]:
        return {
            "signature": self.signature,
            "slot": self.slot,
            "timestamp": self.timestamp,
            "action": self.action,
            "dex": self.dex,
            "token_in": self.token_in.to_dict(),
            "token_out": self.token_out.to_dict(),
            "fee_sol": None if self.fee_lamports is None else format_units(self.fee_lamports, 9),
        }
