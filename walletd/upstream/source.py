"""The trade-source seam: an async stream of transaction pages, newest first."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class TxPage:
    """Enhanced transactions in Helius's JSON shape, newest first.

    `cursor` is the signature of the page's oldest transaction: asking for the pages
    `before` it continues exactly after this page.
    """

    transactions: Sequence[Mapping[str, Any]]
    cursor: str | None


class TradeSource(Protocol):
    """Where histories come from (the demo generator, Helius).

    `pages` yields pages until the history is exhausted (an empty history yields
    nothing); it raises WalletdError subclasses (InvalidEventId for a cursor the
    wallet never had, DataFetchError, ServiceUnavailable) and nothing else. Nothing
    here assumes a history ends: a live source may keep yielding.
    """

    def pages(self, wallet: str, before: str | None) -> AsyncIterator[TxPage]: ...

    async def close(self) -> None: ...
