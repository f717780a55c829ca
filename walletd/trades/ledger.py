"""Balance changes -> Trade: the trade rules of SPEC §4, shared by every upstream adapter.

An adapter (Helius enhanced transactions, standard RPC, the demo generator) reads its
wire format into the wallet's BalanceChanges; only this module decides what is a trade.
The wallet's net change per asset decides everything: what went down was sold, what went
up was bought, route tokens net to zero (which collapses multi-hop swaps), SOL dust and
NFTs are not legs. Amounts are integers of base units, never floats.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from walletd.trades.model import TokenAmount, Trade, rank
from walletd.trades.solana import SOL_DECIMALS, WSOL_MINT

DUST_LAMPORTS = 10_000
MAX_DECIMALS = 30


@dataclass(slots=True)
class BalanceChanges:
    """What one successful transaction did to one wallet's balances.

    `lamports` is the net change of the wallet's SOL, native and wrapped as one asset: the
    wallet's own lamports plus those of its token accounts, so wrapped SOL counts and the
    rent of a token account it opened or closed nets to zero. It still includes the network
    fee; `fee_paid` is that fee when the wallet paid it (the ledger adds it back).
    `tokens` holds the net raw change per mint (wrapped SOL excluded: it is in `lamports`).
    """

    signature: str
    slot: int | None = None
    timestamp: int | None = None
    dex: str | None = None
    fee_paid: int | None = None
    lamports: int = 0
    tokens: dict[str, int] = field(default_factory=dict)
    decimals: dict[str, int] = field(default_factory=dict)

    def add_token(self, mint: str, raw: int, decimals: int) -> None:
        self.tokens[mint] = self.tokens.get(mint, 0) + raw
        self.decimals[mint] = decimals

    def legs(self) -> list[TokenAmount]:
        """Non-zero changes that count as trade legs: no SOL dust, no NFTs."""
        out = []
        lamports = self.lamports + (self.fee_paid or 0)
        if abs(lamports) > DUST_LAMPORTS:
            out.append(TokenAmount(WSOL_MINT, lamports, SOL_DECIMALS))
        for mint, raw in self.tokens.items():
            decimals = self.decimals[mint]
            if raw == 0 or (decimals == 0 and abs(raw) == 1):  # nothing, or an NFT moving
                continue
            out.append(TokenAmount(mint, raw, decimals))
        return out


def trade_of(changes: BalanceChanges) -> Trade | None:
    """The trade these balance changes make, or None when one side is missing."""
    legs = changes.legs()
    gave = _pick(leg for leg in legs if leg.raw < 0)
    got = _pick(leg for leg in legs if leg.raw > 0)
    if gave is None or got is None:
        return None
    return Trade(
        signature=changes.signature,
        slot=changes.slot,
        timestamp=changes.timestamp,
        dex=changes.dex,
        token_in=TokenAmount(gave.mint, -gave.raw, gave.decimals),
        token_out=got,
        fee_lamports=changes.fee_paid,
    )


def _pick(legs: Iterable[TokenAmount]) -> TokenAmount | None:
    """The leg that represents one side: highest quote rank, then the largest amount."""
    return max(legs, key=lambda leg: (rank(leg.mint), abs(leg.raw)), default=None)
