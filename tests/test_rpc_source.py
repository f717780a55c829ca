"""The `rpc` upstream against the fake JSON-RPC provider over real HTTP: gTFA and the
signatures path, fallbacks, every fault, the breaker, and byte-identical output to the
Helius upstream on the same synthetic histories, resumed anywhere, on either upstream."""

from __future__ import annotations

import itertools
import logging
from typing import Any

import base58
import pytest

from tests.fake_helius import FakeHelius, Kind
from tests.fake_rpc import FakeRpc
from tests.sse_client import parse
from tests.support import WALLET
from walletd.upstream.demo import LARGE_DEMO_WALLET

STREAM = "/v4/wallet/{}/stream"
BIG = LARGE_DEMO_WALLET  # 2500 transactions here: three signature pages, 25 gTFA pages
UNKNOWN = base58.b58encode(bytes(range(64))).decode()
PATHS = ("gtfa", "signatures")


@pytest.fixture
async def rpc(aiohttp_server: Any) -> FakeRpc:
    fake = FakeRpc("k3y")
    fake.add_synthetic(WALLET)
    fake.add_synthetic(BIG, 2500)
    fake.server = await aiohttp_server(fake.app())  # type: ignore[attr-defined]
    return fake


def rpc_env(fake: FakeRpc, method: str = "auto", **extra: Any) -> dict[str, str]:
    return fake.walletd_env(fake.server, method, **extra)  # type: ignore[attr-defined]


@pytest.fixture
async def helius_env(aiohttp_server: Any) -> dict[str, str]:
    fake = FakeHelius(synthetic={WALLET: None, BIG: 2500})
    return fake.walletd_env(await aiohttp_server(fake.app()), UPSTREAM="helius")


async def body(client: Any, wallet: str = WALLET, **headers: str) -> bytes:
    resp = await client.get(STREAM.format(wallet), headers=headers)
    assert resp.status == 200, await resp.text()
    return await resp.read()


def trades_events(raw: bytes) -> list[bytes]:
    """The `trades` event blocks of a stream, byte for byte."""
    return [b for b in raw.split(b"\n\n") if b"event: trades\n" in b]


async def reference(serve: Any, helius_env: dict[str, str], wallet: str = WALLET) -> bytes:
    return await body(await serve(**helius_env), wallet)


# --- byte-identical to Helius -----------------------------------------------------------


@pytest.mark.parametrize("wallet", [WALLET, BIG])
@pytest.mark.parametrize("method", PATHS)
async def test_rpc_and_helius_send_byte_identical_trades_events(
    serve, rpc, helius_env, method, wallet
):
    expected = await reference(serve, helius_env, wallet)
    got = await body(await serve(**rpc_env(rpc, method)), wallet)
    assert trades_events(expected)
    assert trades_events(got) == trades_events(expected)
    complete = parse(got).events[-1]
    assert complete.name == "complete"
    # Failed transactions are examined on every path, so the counts agree too.
    assert complete.data["signatures_scanned"] == len(rpc.histories[wallet].entries)
    assert complete.data == {**parse(expected).events[-1].data, "duration_s": ANY}


class _Any:
    def __eq__(self, other: object) -> bool:
        return True


ANY = _Any()


async def test_resume_from_every_cut_point_is_identical_on_every_upstream(serve, rpc, helius_env):
    """A stream started on one upstream resumes on any other with its last id."""
    env = {"SSE_BATCH_SIZE": 7}
    clients = {
        "helius": await serve(**helius_env, **env),
        "gtfa": await serve(**rpc_env(rpc, "gtfa"), **env),
        "signatures": await serve(**rpc_env(rpc, "signatures"), **env),
    }
    whole = {name: await body(client) for name, client in clients.items()}
    events = trades_events(whole["helius"])
    assert len(events) > 5
    assert all(trades_events(raw) == events for raw in whole.values())
    whole_trades = parse(whole["helius"]).trades
    for cut in parse(whole["helius"]).named("trades"):
        assert cut.id is not None
        rests = {
            name: await body(client, **{"Last-Event-ID": cut.id})
            for name, client in clients.items()
        }
        assert trades_events(rests["gtfa"]) == trades_events(rests["helius"])
        assert trades_events(rests["signatures"]) == trades_events(rests["helius"])
        upto = next(i for i, t in enumerate(whole_trades) if t["signature"] == cut.id) + 1
        assert whole_trades[:upto] + parse(rests["gtfa"]).trades == whole_trades


# --- the two paths and the fallbacks ----------------------------------------------------


async def test_gtfa_lists_then_asks_pages_by_slot_range_with_token_accounts_asked(serve, rpc):
    client = await serve(**rpc_env(rpc, "auto"))
    await body(client, BIG)
    calls = rpc.calls("getTransactionsForAddress")
    assert not rpc.calls("getSignaturesForAddress")
    first, *rest = calls
    assert (first.details, first.limit, first.pagination_token) == ("full", 100, None)
    assert first.filters == {"tokenAccounts": "balanceChanged"}
    listing = [c for c in rest if c.details == "signatures"]
    assert [c.limit for c in listing] == [1000] * 3  # the whole history, newest first
    assert all(c.filters == {"tokenAccounts": "balanceChanged"} for c in listing)
    assert [bool(c.pagination_token) for c in listing] == [False, True, True]
    # The second page by the first page's token, while the listing came; then ranges.
    second, *ranges = [c for c in rest if c.details == "full"]
    assert second.pagination_token and second.filters == first.filters
    assert len(ranges) == 23 and all(c.pagination_token is None for c in ranges)
    for page, call in enumerate(ranges, start=2):
        entries = rpc.histories[BIG].entries[100 * page : 100 * page + 100]
        slots = {"gte": entries[-1].slot, "lte": entries[0].slot}
        assert call.filters == {
            "slot": slots,
            "status": "succeeded",
            "tokenAccounts": "balanceChanged",
        }
    # Failed transactions are never downloaded after the second page.
    downloaded = sum(c.returned or 0 for c in ranges)
    assert downloaded == sum(1 for e in rpc.histories[BIG].entries[200:] if e.err is None)


def first_page(entry: Any) -> bool:
    return entry.details == "full" and entry.filters == {"tokenAccounts": "balanceChanged"}


def first_listing(entry: Any) -> bool:
    return entry.details == "signatures" and entry.pagination_token is None


async def test_once_gtfa_answered_the_listing_goes_alongside_the_first_page(serve, rpc, helius_env):
    expected = trades_events(await reference(serve, helius_env, BIG))
    client = await serve(**rpc_env(rpc, "gtfa", CACHE_TTL=0))
    assert trades_events(await body(client, BIG)) == expected
    first, listing = rpc.log[:2]  # the first stream of the process: one after the other
    assert first_page(first) and first_listing(listing) and first.t_end < listing.t
    mark = len(rpc.log)
    rpc.faults.latency_s = 0.05
    assert trades_events(await body(client, BIG)) == expected
    first, listing = rpc.log[mark : mark + 2]
    assert first_page(first) and first_listing(listing)
    assert listing.t < first.t_end  # asked before the first page had answered
    assert len([e for e in rpc.log[mark:] if e.details == "signatures"]) == 3


async def test_an_early_listing_that_failed_is_asked_again_after_the_first_page(
    serve, rpc, helius_env
):
    expected = trades_events(await reference(serve, helius_env, BIG))
    client = await serve(**rpc_env(rpc, "gtfa", CACHE_TTL=0))
    await body(client, BIG)
    mark = len(rpc.log)
    rpc.faults.inject("status", status=400, when=first_listing)  # not retried
    rpc.faults.inject("delay", delay_s=0.3, when=first_page)  # answers after that
    assert trades_events(await body(client, BIG)) == expected
    assert [e.status for e in rpc.log[mark:] if first_listing(e)] == [400, 200]


def by_token(entry: Any) -> bool:
    return entry.details == "full" and bool(entry.pagination_token)


async def test_a_second_page_that_failed_is_asked_for_by_its_range(serve, rpc, helius_env):
    expected = trades_events(await reference(serve, helius_env, BIG))
    client = await serve(**rpc_env(rpc, "gtfa"))
    rpc.faults.inject("rpc_error", code=-32602, message="invalid token", when=by_token)
    assert trades_events(await body(client, BIG)) == expected
    entries = rpc.histories[BIG].entries[100:200]
    second = {"gte": entries[-1].slot, "lte": entries[0].slot}
    asked = [e for e in rpc.log if e.filters and e.filters.get("slot") == second]
    assert [e.status for e in asked] == [200]
    assert [e.fault for e in rpc.log if by_token(e)] == [Kind.RPC_ERROR]


async def test_the_listing_runs_ahead_of_the_range_pages(serve, rpc, helius_env):
    """Each listing call goes as soon as the previous one answers, not when the range
    pages reach its records: one that waits out a Retry-After holds nothing up."""
    expected = trades_events(await reference(serve, helius_env, BIG))
    ranges = lambda e: bool(e.filters) and "status" in e.filters  # noqa: E731
    rpc.faults.inject("delay", delay_s=0.2, times=None, when=ranges)
    client = await serve(**rpc_env(rpc, "gtfa", UPSTREAM_CONCURRENCY=8))  # 4 pages ahead
    assert trades_events(await body(client, BIG)) == expected
    listing = [e for e in rpc.log if e.details == "signatures"]
    assert len(listing) == 3
    assert listing[-1].t < min(e.t_end for e in rpc.log if ranges(e))


def crowded_slots(txs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`txs` (newest first) moved into few slots: runs of 1 to 250 transactions of the
    wallet share a slot, across page (100) and listing (1000) boundaries alike."""
    sizes = itertools.cycle([1, 3, 37, 250, 2, 61, 150, 5, 99])
    out: list[dict[str, Any]] = []
    slot = 400_000_000
    while len(out) < len(txs):
        out += [{**tx, "slot": slot} for tx in txs[len(out) : len(out) + next(sizes)]]
        slot -= 1
    return out


async def test_gtfa_ranges_give_the_same_trades_with_crowded_slots(serve, aiohttp_server):
    source = FakeRpc()
    source.add_synthetic(BIG, 2500)
    txs = [source.transaction(e.signature) for e in source.histories[BIG].entries]
    fake = FakeRpc()
    fake.add_history(BIG, crowded_slots([tx for tx in txs if tx is not None]))
    fake.server = await aiohttp_server(fake.app())  # type: ignore[attr-defined]
    gtfa = await body(await serve(**rpc_env(fake, "gtfa")), BIG)
    signatures = await body(await serve(**rpc_env(fake, "signatures")), BIG)
    assert len(trades_events(gtfa)) > 20
    assert trades_events(gtfa) == trades_events(signatures)
    done = parse(gtfa).events[-1]
    assert done.data == {**parse(signatures).events[-1].data, "duration_s": ANY}
    assert done.data["signatures_scanned"] == 2500
    ranges = [
        c for c in fake.calls("getTransactionsForAddress") if c.filters and "status" in c.filters
    ]
    assert any(c.pagination_token for c in ranges)  # a range that outgrew a page, continued


async def test_first_trades_go_out_before_the_history_is_listed(serve, rpc):
    slow_pages = dict(delay_s=0.5, skip=1, when=lambda e: e.method == "getSignaturesForAddress")
    rpc.faults.inject("delay", times=None, **slow_pages)
    client = await serve(**rpc_env(rpc, "signatures"))
    async with client.get(STREAM.format(BIG)) as resp:
        while b"event: trades" not in await resp.content.readuntil(b"\n\n"):
            pass
        first_trades_at = rpc.clock()
        await resp.read()
    pages = rpc.calls("getSignaturesForAddress")
    assert len(pages) == 3
    assert first_trades_at < pages[-1].t
    batches = [c.calls.count("getTransaction") for c in rpc.calls("batch")]
    succeeded = sum(1 for e in rpc.histories[BIG].entries if e.err is None)
    assert len(batches) == 25 and sum(batches) == succeeded  # failed ones never fetched


async def test_the_first_batch_queues_ahead_of_the_next_signature_page(serve, rpc):
    """The first trades wait for one batch, not for a listing the tenth batch needs."""
    await body(await serve(**rpc_env(rpc, "signatures")), BIG)
    methods = [e.method for e in rpc.log]
    assert methods[:3] == ["getSignaturesForAddress", "batch", "getSignaturesForAddress"]


async def new_rpc(aiohttp_server: Any, **options: Any) -> FakeRpc:
    fake = FakeRpc(**options)
    fake.add_synthetic(WALLET)
    fake.server = await aiohttp_server(fake.app())  # type: ignore[attr-defined]
    return fake


async def test_method_not_found_falls_back_to_signatures_once_per_process(
    serve, aiohttp_server, helius_env
):
    expected = trades_events(await reference(serve, helius_env))
    fake = await new_rpc(aiohttp_server, gtfa=False)
    client = await serve(**rpc_env(fake, "auto", CACHE_TTL=0))
    for _ in range(2):
        assert trades_events(await body(client)) == expected
    # Asked once; the second stream went straight to getSignaturesForAddress.
    assert len(fake.calls("getTransactionsForAddress")) == 1
    assert len(fake.calls("getSignaturesForAddress")) == 2


async def test_explicit_gtfa_without_the_method_is_a_fetch_error(serve, aiohttp_server):
    fake = await new_rpc(aiohttp_server, gtfa=False)
    stream = parse(await body(await serve(**rpc_env(fake, "gtfa"))))
    assert stream.events[-1].data["code"] == "DATA_FETCH_ERROR"


async def test_refused_batches_fall_back_to_paced_single_calls(serve, aiohttp_server, helius_env):
    expected = trades_events(await reference(serve, helius_env))
    fake = await new_rpc(aiohttp_server, batches=False)
    client = await serve(**rpc_env(fake, "signatures", CACHE_TTL=0))
    assert trades_events(await body(client)) == expected
    refused = len(fake.calls("batch"))
    assert 1 <= refused <= 2  # the batches in flight when the first refusal came
    assert trades_events(await body(client)) == expected
    assert len(fake.calls("batch")) == refused  # never tried again in this process
    succeeded = sum(1 for e in fake.histories[WALLET].entries if e.err is None)
    assert sum(1 for e in fake.log if e.method == "getTransaction") == 2 * succeeded


# --- faults, cursors, the breaker -------------------------------------------------------


FAULTS = [
    ("status", {"status": 429, "retry_after": 1}),
    ("status", {"status": 502}),
    ("reset", {}),
    ("reset_body", {}),
    ("malformed", {}),
    ("truncated", {}),
    ("rpc_error", {"code": -32603, "message": "internal"}),
    ("rpc_error", {"code": -32005, "message": "node is behind"}),
    ("rpc_error", {"code": -32004, "message": "block not available"}),
    ("hang", {}),
]


@pytest.mark.parametrize("method", PATHS)
@pytest.mark.parametrize(("kind", "options"), FAULTS, ids=lambda v: str(v))
async def test_every_fault_heals_with_exactly_the_right_trades(
    serve, rpc, helius_env, method, kind, options
):
    expected = trades_events(await reference(serve, helius_env))
    rpc.faults.inject(kind, times=1, **options)  # the first call
    rpc.faults.inject(kind, times=1, skip=1, **options)  # and the second: a batch or page
    client = await serve(**rpc_env(rpc, method, UPSTREAM_TIMEOUT=0.5))
    raw = await body(client)
    assert parse(raw).events[-1].name == "complete", parse(raw).events[-1]
    assert trades_events(raw) == expected
    assert sum(1 for e in rpc.log if e.fault) == 2


async def test_retry_after_is_honoured(serve, rpc):
    rpc.faults.inject("status", times=1, status=429, retry_after=1)
    await body(await serve(**rpc_env(rpc, "gtfa")))
    first = rpc.log[0]
    assert first.status == 429
    again = next(e for e in rpc.log[1:] if (e.details, e.filters) == (first.details, first.filters))
    assert again.t - first.t >= 1.0


@pytest.mark.parametrize("method", PATHS)
async def test_unknown_cursor_is_invalid_event_id_before_the_stream(serve, rpc, method):
    resp = await (await serve(**rpc_env(rpc, method))).get(
        STREAM.format(WALLET), params={"before": UNKNOWN}
    )
    assert resp.status == 400
    assert (await resp.json())["code"] == "INVALID_EVENT_ID"


async def test_upstream_down_gives_fetch_errors_then_the_circuit_opens(serve, rpc):
    rpc.faults.inject("status", times=None, status=503)
    client = await serve(**rpc_env(rpc, "gtfa", UPSTREAM_MAX_RETRIES=1, CACHE_TTL=0))
    for _ in range(3):
        stream = parse(await body(client))
        assert stream.events[-1].data["code"] == "DATA_FETCH_ERROR"
    assert len(rpc.log) == 6  # three streams, one call and one retry each
    stream = parse(await body(client))
    assert stream.events[-1].data["code"] == "SERVICE_UNAVAILABLE"
    assert len(rpc.log) == 6  # failed fast: the upstream was not asked
    assert (await (await client.get("/ready")).json())["reasons"] == ["upstream_circuit_open"]


async def test_the_key_in_rpc_url_is_never_logged_nor_shown(serve, rpc, caplog):
    caplog.set_level(logging.DEBUG)
    rpc.faults.inject("status", times=None, status=503)
    client = await serve(**rpc_env(rpc, "gtfa", UPSTREAM_MAX_RETRIES=1))
    raw = await body(client)
    assert parse(raw).events[-1].data["code"] == "DATA_FETCH_ERROR"
    assert b"k3y" not in raw
    assert any(r.msg == "upstream_failed" for r in caplog.records)
    for record in caplog.records:
        if not record.name.startswith("walletd"):
            continue  # the fake provider's own access log
        assert "k3y" not in record.getMessage() and "k3y" not in str(record.__dict__)


@pytest.mark.parametrize("method", PATHS)
async def test_a_bad_upstream_signature_is_skipped_and_logged(
    serve, aiohttp_server, method, caplog
):
    fake, source = FakeRpc(), await new_rpc(aiohttp_server)
    txs = [tx for e in source.histories[WALLET].entries if (tx := source.transaction(e.signature))]
    assert len(txs) == len(source.histories[WALLET].entries)
    bad = {**txs[0], "transaction": {**txs[0]["transaction"], "signatures": ["not-a-signature"]}}
    fake.add_history(WALLET, [bad, *txs[1:]])
    fake.server = await aiohttp_server(fake.app())  # type: ignore[attr-defined]
    stream = parse(await body(await serve(**rpc_env(fake, method))))
    assert stream.events[-1].name == "complete"
    assert all(t["signature"] != "not-a-signature" for t in stream.trades)
    assert stream.events[-1].data["signatures_scanned"] == len(txs) - 1
    assert any(r.msg == "untrusted_signature" for r in caplog.records)
