"""The trade-source seam: an async stream of transaction pages, newest first."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from walletd.trades.model import Trade
from walletd.trades.solana import is_signature
from walletd.upstream.helius.reader import parse_transaction


class TxReader(Protocol):
    """How a page's transactions are read: (transaction, wallet) -> its trade, or None.
    Never raises (upstream JSON is untrusted; readers log and skip what does not fit,
    naming the transaction's `position` in its page)."""

    def __call__(self, tx: Any, wallet: str, *, position: int | None = None) -> Trade | None: ...


def field_signature(tx: Mapping[str, Any]) -> object:
    """A transaction's signature where Helius (and the demo) keep it."""
    return tx.get("signature")


@dataclass(frozen=True, slots=True)
class TxPage:
    """Transactions of one page, newest first, in the shape `read` understands (Helius
    enhanced transactions by default; the `rpc` upstream's getTransaction results).

    `cursor` is the signature of the page's oldest transaction: asking for the pages
    `before` it continues exactly after this page.
    """

    transactions: Sequence[Mapping[str, Any]]
    cursor: str | None
    read: TxReader = parse_transaction
    signature_of: Callable[[Mapping[str, Any]], object] = field_signature


def page_signatures(page: TxPage) -> list[str]:
    """The page's transaction signatures that may reach a client (SPEC §4), in order."""
    signatures = (page.signature_of(tx) for tx in page.transactions)
    return [s for s in signatures if isinstance(s, str) and is_signature(s)]


class TradeSource(Protocol):
    """Where histories come from (the demo generator, Helius, standard JSON-RPC).

    `pages` yields pages until the history is exhausted (an empty history yields
    nothing); it raises WalletdError subclasses (InvalidEventId for a cursor the
    wallet never had, DataFetchError, ServiceUnavailable) and nothing else. Nothing
    here assumes a history ends: a live source may keep yielding.

    `newer` is live follow's poll (SPEC §1): every transaction strictly newer than
    signature `since` (None: every transaction), newest first, in pages. With `verify`
    it raises InvalidEventId when `since` is not in the wallet's history; pollers pass
    False for signatures the upstream itself listed, sparing the check its call.
    """

    def pages(self, wallet: str, before: str | None) -> AsyncIterator[TxPage]: ...

    async def newer(
        self, wallet: str, since: str | None, *, verify: bool = True
    ) -> list[TxPage]: ...

    async def close(self) -> None: ...
