"""The `complete` event's summary of the trades one connection sent (SPEC §1)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from walletd.trades.model import Trade, format_units
from walletd.trades.solana import SOL_DECIMALS, WSOL_MINT

if TYPE_CHECKING:  # the wire shape the summary fills, declared with the events
    from walletd.stream.events import Summary

# What the summary needs of one trade, as a plain tuple of atoms: (mint given, mint
# received, action, timestamp, SOL lamports moved). The GC stops tracking such tuples,
# so a cached history of 20,000 trades adds no work to full collections.
TradeFacts = tuple[str, str, str, int | None, int]


def facts_of(trade: Trade) -> TradeFacts:
    lamports = sum(leg.raw for leg in (trade.token_in, trade.token_out) if leg.mint == WSOL_MINT)
    return (trade.token_in.mint, trade.token_out.mint, trade.action, trade.timestamp, lamports)


class TradeSummary:
    """Running totals over the trades sent; O(distinct mints) memory."""

    __slots__ = ("actions", "first_at", "last_at", "mints", "volume_lamports")

    def __init__(self) -> None:
        self.mints: set[str] = set()
        self.actions = {"buy": 0, "sell": 0, "swap": 0}
        self.first_at: int | None = None
        self.last_at: int | None = None
        self.volume_lamports = 0

    def add(self, facts: TradeFacts) -> None:
        mint_in, mint_out, action, timestamp, lamports = facts
        self.mints.add(mint_in)
        self.mints.add(mint_out)
        self.actions[action] += 1
        if timestamp is not None:
            if self.first_at is None or timestamp < self.first_at:
                self.first_at = timestamp
            if self.last_at is None or timestamp > self.last_at:
                self.last_at = timestamp
        self.volume_lamports += lamports

    def copy(self) -> TradeSummary:
        out = TradeSummary()
        out.merge(self)
        return out

    def merge(self, other: TradeSummary) -> None:
        """Add the totals of `other` (a whole page's summary, computed once per history)."""
        self.mints |= other.mints
        for action, count in other.actions.items():
            self.actions[action] += count
        if other.first_at is not None and (self.first_at is None or other.first_at < self.first_at):
            self.first_at = other.first_at
        if other.last_at is not None and (self.last_at is None or other.last_at > self.last_at):
            self.last_at = other.last_at
        self.volume_lamports += other.volume_lamports

    def to_dict(self) -> Summary:
        """The `summary` object of `complete` (SPEC §1)."""
        return {
            "unique_tokens": len(self.mints),
            "buys": self.actions["buy"],
            "sells": self.actions["sell"],
            "swaps": self.actions["swap"],
            "first_trade_at": self.first_at,
            "last_trade_at": self.last_at,
            "volume_sol": format_units(self.volume_lamports, SOL_DECIMALS),
        }
