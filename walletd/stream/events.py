"""The data of every SSE event of SPEC §1, as types: the one description of the payloads.

handler.py builds its events through these TypedDicts, and /openapi.json generates its
event schemas from them (api/jsonschema.py), so the two cannot drift apart. A `Schema`
in an `Annotated` adds the JSON Schema keywords a type cannot say (a pattern, a bound,
a description); a named one becomes a component every use refers to. A class's
docstring is its schema's description. Pure: no aiohttp.
"""

# No `from __future__ import annotations`: TypedDict must see NotRequired itself for
# __required_keys__ to be right (Python 3.11 cannot see it inside a string annotation).
from typing import Annotated, Any, Literal, NotRequired, TypedDict

from walletd.errors import ERROR_CODES


class Schema:
    """JSON Schema keywords for a type; with `name`, the component it is published as."""

    __slots__ = ("keywords", "name")

    def __init__(self, name: str | None = None, **keywords: Any) -> None:
        self.name = name
        self.keywords = keywords


_BASE58 = "1-9A-HJ-NP-Za-km-z"
# Lengths a base58 text of 32 (an address) or 64 bytes (a signature) can have.
ADDRESS_PATTERN = f"^[{_BASE58}]{{32,44}}$"
SIGNATURE_PATTERN = f"^[{_BASE58}]{{64,88}}$"
DECIMAL_PATTERN = r"^[0-9]+(\.[0-9]+)?$"

Address = Annotated[
    str,
    Schema(
        "Address",
        pattern=ADDRESS_PATTERN,
        description="A Solana address: base58 that decodes to exactly 32 bytes.",
        examples=["3JoVBiQEA2QKsq7TzW5ez5jVRtbbYgTNijoZzp5qgkr2"],
    ),
]
Signature = Annotated[
    str,
    Schema(
        "Signature",
        pattern=SIGNATURE_PATTERN,
        description="A transaction signature: base58 that decodes to exactly 64 bytes.",
    ),
]
EventId = Annotated[
    str,
    Schema(
        "EventId",
        pattern=f"^[{_BASE58}]{{64,88}}([.][{_BASE58}]{{64,88}})?$",
        description=(
            "A resume cursor: a signature, or on follow streams during the history "
            "`<oldest trade sent>.<head>` (the stream's head when the history started)."
        ),
    ),
]
Decimal = Annotated[
    str,
    Schema(
        "Decimal",
        pattern=DECIMAL_PATTERN,
        description="An exact decimal in UI units (never a float).",
        examples=["1.5", "561218.676075"],
    ),
]
ErrorCode = Annotated[
    str,
    Schema(
        "ErrorCode",
        enum=list(ERROR_CODES),
        description=(
            "What went wrong, stable across versions. Clients should treat an unknown code "
            "like INTERNAL_ERROR."
        ),
    ),
]
Count = Annotated[int, Schema(minimum=0)]
UnixTime = Annotated[int, Schema(description="Unix seconds.")]
StreamId = Annotated[str, Schema(format="uuid")]


class TokenAmount(TypedDict):
    """The wallet's net change of one asset, less fee and token-account rent."""

    mint: Address
    symbol: Annotated[
        Literal["SOL", "USDC", "USDT"] | None,
        Schema(description="Known for quote assets, else null. Native SOL is wrapped SOL."),
    ]
    amount: Decimal
    decimals: Count


class Trade(TypedDict):
    """One swap seen from the wallet; one per transaction signature."""

    signature: Signature
    slot: Count | None
    timestamp: UnixTime | None
    action: Annotated[
        Literal["buy", "sell", "swap"],
        Schema(
            description=(
                "`buy` when the wallet gave the higher-ranked asset (USDC = USDT > SOL >"
                " other tokens), `sell` when it received it, `swap` when both rank equal."
            )
        ),
    ]
    dex: Annotated[str, Schema(examples=["RAYDIUM", "PUMP_AMM"])] | None
    token_in: Annotated[TokenAmount, Schema(description="What the wallet gave.")]
    token_out: Annotated[TokenAmount, Schema(description="What the wallet received.")]
    fee_sol: Decimal | None


class Summary(TypedDict):
    """Of the trades this connection sent."""

    unique_tokens: Annotated[Count, Schema(description="Distinct mints, SOL included.")]
    buys: Count
    sells: Count
    swaps: Count
    first_trade_at: UnixTime | None
    last_trade_at: UnixTime | None
    volume_sol: Annotated[Decimal, Schema(description="SOL spent plus SOL received.")]


class ConnectedEvent(TypedDict):
    """`event: connected`, first."""

    stream_id: StreamId
    wallet: Address
    resumed_from: Signature | None
    timestamp: UnixTime


class ProgressEvent(TypedDict):
    """`event: progress`, while scanning."""

    step: Annotated[str, Schema(examples=["fetching", "scanning"])]
    message: str
    signatures_scanned: Count
    trades_found: Count


class TradesEvent(TypedDict):
    """`event: trades`, with `id:` the last trade's signature (follow streams: during the
    history `<oldest trade sent>.<head>`, then the newest signature scanned)."""

    # Written from prebuilt bytes (sse.trades_prefix, upstream/history.py), never as a dict.
    trades: Annotated[list[Trade], Schema(minItems=1)]
    batch: Annotated[int, Schema(minimum=1, description="1-based, per connection.")]
    total: Annotated[int, Schema(minimum=1, description="Trades sent so far.")]


class HeartbeatEvent(TypedDict):
    """`event: heartbeat`."""

    timestamp: UnixTime


class CaughtUpEvent(TypedDict):
    """`event: caught_up`, follow streams only: the history is sent and live trades
    follow; its `id:` is the head (none for a wallet without transactions)."""

    trades_found: Count
    signatures_scanned: Annotated[
        Count, Schema(description="Every transaction examined, trades or not.")
    ]
    duration_s: Annotated[float, Schema(minimum=0)]
    summary: Summary


class CompleteEvent(CaughtUpEvent):
    """`event: complete`, last; the server then closes."""

    truncated: Annotated[
        bool, Schema(description="`limit` or MAX_WALLET_TRADES ended the stream first.")
    ]


class Error(TypedDict):
    """Every HTTP error body, and the data of an `error` event."""

    code: ErrorCode
    error: Annotated[str, Schema(description="A human-readable message.")]
    request_id: Annotated[str, Schema(description="The X-Request-ID.")]
    retry_after: NotRequired[
        Annotated[
            Count, Schema(description="Seconds to wait before retrying, when retrying helps.")
        ]
    ]


class ErrorEvent(Error):
    """`event: error`, last; the server then closes."""

    stream_id: StreamId
    last_event_id: NotRequired[
        Annotated[
            EventId | None,
            Schema(
                description=(
                    "On resumable codes: the cursor to resume from (the last `trades` id "
                    "sent, else the cursor the request started from, else null)."
                )
            ),
        ]
    ]


# The events a stream sends, by name, in SPEC §1 order.
EVENT_TYPES: dict[str, type[Any]] = {
    "connected": ConnectedEvent,
    "progress": ProgressEvent,
    "trades": TradesEvent,
    "heartbeat": HeartbeatEvent,
    "complete": CompleteEvent,
    "caught_up": CaughtUpEvent,
    "error": ErrorEvent,
}
