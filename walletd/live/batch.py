"""One poll's result, parsed and encoded once for every follower of a wallet (SPEC §1)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from walletd.stream import sse
from walletd.upstream.pages import parse_page
from walletd.upstream.source import TxPage, page_signatures


@dataclass(frozen=True, slots=True)
class LiveBatch:
    """The transactions of a wallet strictly newer than `since`, up to `head`.

    `scanned` lists every signature examined, newest first (followers find their place
    in it); the trades are oldest first, as the wire sends them. `body` is the `trades`
    event without its per-connection tail (`batch`, `total`): the bytes every follower
    writes, built once, its `id:` the newest signature scanned.
    """

    since: str | None
    head: str
    scanned: tuple[str, ...]
    signatures: tuple[str, ...]
    objects: tuple[bytes, ...]
    positions: tuple[int, ...]  # each trade's index in `scanned`
    times: tuple[int | None, ...]  # each trade's block time, for the lag metric
    detected: float = field(default_factory=time.monotonic)
    body: bytes = b""
    newest_time: int | None = None  # of its trades: the lag metric's, once per batch

    def __post_init__(self) -> None:
        body = sse.trades_prefix(self.head) + b",".join(self.objects)
        object.__setattr__(self, "body", body)
        newest = max((t for t in self.times if t is not None), default=None)
        object.__setattr__(self, "newest_time", newest)

    def __len__(self) -> int:
        return len(self.signatures)

    def index(self, signature: str | None) -> int | None:
        """Where `signature` is in `scanned` (0 is the newest), or None."""
        try:
            return self.scanned.index(signature) if signature is not None else None
        except ValueError:
            return None


def build_batch(
    pages: Sequence[TxPage], wallet: str, since: str | None, *, detected: float | None = None
) -> LiveBatch | None:
    """The batch of `pages` (a source's `newer` answer), or None when it lists nothing."""
    scanned = [s for page in pages for s in page_signatures(page)]
    if not scanned:
        return None
    where = {signature: i for i, signature in enumerate(scanned)}
    seen: set[str] = set()
    trades: list[tuple[str, bytes, int, int | None]] = []
    for page in pages:
        parsed = parse_page(page, wallet, seen)
        for signature, obj, facts in zip(
            parsed.signatures, parsed.objects, parsed.facts, strict=True
        ):
            if signature in where:
                trades.append((signature, obj, where[signature], facts[3]))
    trades.reverse()  # oldest first
    return LiveBatch(
        since=since,
        head=scanned[0],
        scanned=tuple(scanned),
        signatures=tuple(t[0] for t in trades),
        objects=tuple(t[1] for t in trades),
        positions=tuple(t[2] for t in trades),
        times=tuple(t[3] for t in trades),
        detected=time.monotonic() if detected is None else detected,
    )
