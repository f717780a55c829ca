"""The fake RPC provider over real HTTP: gTFA and signature paging, batches, every fault."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import base58
import pytest

from tests.fake_helius import Kind, TokenBucket
from tests.fake_rpc import FakeRpc
from walletd.upstream.helius.reader import parse_transaction
from walletd.upstream.rpc.reader import parse_rpc_transaction

WALLET = "3JoVBiQEA2QKsq7TzW5ez5jVRtbbYgTNijoZzp5qgkr2"
UNKNOWN = base58.b58encode(bytes(range(64))).decode()
DATA = Path(__file__).parent / "data" / "rpc"
FULL = {"transactionDetails": "full", "encoding": "jsonParsed", "maxSupportedTransactionVersion": 0}


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake() -> FakeRpc:
    fake = FakeRpc("k3y", clock=ManualClock())
    fake.add_synthetic(WALLET, 250)
    return fake


@pytest.fixture
async def url(aiohttp_server: Any, fake: FakeRpc) -> str:
    return fake.url(await aiohttp_server(fake.app()))


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


def call(method: str, *params: Any, rpc_id: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rpc_id, "method": method, "params": list(params)}


async def post(session: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, Any]:
    async with session.post(url, json=body) as response:
        return response.status, await response.json(content_type=None)


async def test_gtfa_pages_chain_by_pagination_token_to_the_whole_history(
    fake: FakeRpc, url: str, session: aiohttp.ClientSession
) -> None:
    seen, token, pages = [], None, 0
    while True:
        config = {**FULL, "limit": 100, "paginationToken": token}
        status, body = await post(session, url, call("getTransactionsForAddress", WALLET, config))
        assert status == 200
        page = body["result"]
        seen += [tx["transaction"]["signatures"][0] for tx in page["data"]]
        pages += 1
        token = page["paginationToken"]
        if token is None:
            break
        assert isinstance(token, str) and ":" in token  # "slot:position"
    assert pages == 3
    expected = [e.signature for e in fake.histories[WALLET].entries]
    assert seen == expected  # newest first, none lost, none repeated


async def test_gtfa_full_entries_parse_to_the_demo_trades(
    fake: FakeRpc, url: str, session: aiohttp.ClientSession
) -> None:
    demo = FakeRpc().add_synthetic(WALLET, 250)
    _, body = await post(
        session, url, call("getTransactionsForAddress", WALLET, {**FULL, "limit": 100})
    )
    for entry, tx in zip(body["result"]["data"], demo, strict=False):
        assert "transactionIndex" in entry
        assert parse_rpc_transaction(entry, WALLET) == parse_transaction(tx, WALLET)


async def test_gtfa_limits_signatures_order_and_status(
    url: str, session: aiohttp.ClientSession
) -> None:
    _, body = await post(
        session, url, call("getTransactionsForAddress", WALLET, {**FULL, "limit": 101})
    )
    assert body["error"]["code"] == -32602
    _, body = await post(
        session, url, call("getTransactionsForAddress", WALLET, {"limit": 1000, "sortOrder": "asc"})
    )
    data = body["result"]["data"]
    assert len(data) == 250 and body["result"]["paginationToken"] is None
    assert data[0]["slot"] < data[-1]["slot"] and set(data[0]) >= {"signature", "err", "blockTime"}
    config = {"limit": 1000, "filters": {"status": "failed"}}
    _, body = await post(session, url, call("getTransactionsForAddress", WALLET, config))
    assert body["result"]["data"] and all(e["err"] is not None for e in body["result"]["data"])
    config = {"paginationToken": "1:99999"}
    _, body = await post(session, url, call("getTransactionsForAddress", WALLET, config))
    assert body["error"]["code"] == -32602


async def test_gtfa_filters_slot_and_block_time_ranges_and_status_as_documented(
    fake: FakeRpc, url: str, session: aiohttp.ClientSession
) -> None:
    entries = fake.histories[WALLET].entries

    async def gtfa(**config: Any) -> Any:
        _, body = await post(session, url, call("getTransactionsForAddress", WALLET, config))
        return body

    top, bottom = entries[10].slot, entries[60].slot
    slots = {"gte": bottom, "lte": top}
    page = (await gtfa(limit=1000, filters={"slot": slots, "status": "succeeded"}))["result"]
    expected = [e for e in entries if bottom <= e.slot <= top and e.err is None]
    assert [d["signature"] for d in page["data"]] == [e.signature for e in expected]
    assert page["paginationToken"] is None  # nothing else matches
    # A filtered page continues by its token, still filtered, and ends without one.
    seen, token = [], None
    while True:
        config = {**FULL, "limit": 7, "filters": {"slot": {"gt": bottom, "lt": top}}}
        result = (await gtfa(**config, paginationToken=token))["result"]
        seen += [tx["transaction"]["signatures"][0] for tx in result["data"]]
        if (token := result["paginationToken"]) is None:
            break
    assert seen == [e.signature for e in entries if bottom < e.slot < top]
    when = entries[3].block_time
    page = (await gtfa(limit=1000, filters={"blockTime": {"eq": when}}))["result"]
    assert {d["signature"] for d in page["data"]} == {
        e.signature for e in entries if e.block_time == when
    }
    for bad in (
        {"slot": {"ge": 1}},
        {"slot": {"gte": "1"}},
        {"slot": {"eq": 1}},
        {"tokenAccounts": "some"},
        {"signature": {"lt": entries[0].signature}},
    ):
        assert (await gtfa(filters=bad))["error"]["code"] == -32602


async def test_signature_pages_by_before_and_stop_at_until(
    fake: FakeRpc, url: str, session: aiohttp.ClientSession
) -> None:
    sigs = [e.signature for e in fake.histories[WALLET].entries]
    _, body = await post(session, url, call("getSignaturesForAddress", WALLET, {"limit": 100}))
    assert [e["signature"] for e in body["result"]] == sigs[:100]
    config = {"limit": 1000, "before": sigs[99]}
    _, body = await post(session, url, call("getSignaturesForAddress", WALLET, config))
    assert [e["signature"] for e in body["result"]] == sigs[100:]
    config = {"before": sigs[9], "until": sigs[20]}
    _, body = await post(session, url, call("getSignaturesForAddress", WALLET, config))
    assert [e["signature"] for e in body["result"]] == sigs[10:20]
    _, body = await post(session, url, call("getSignaturesForAddress", WALLET, {"limit": 1001}))
    assert body["error"]["code"] == -32602


@pytest.mark.parametrize("cursor", ["before", "until"])
async def test_unknown_cursor_is_32020(
    url: str, session: aiohttp.ClientSession, cursor: str
) -> None:
    _, body = await post(session, url, call("getSignaturesForAddress", WALLET, {cursor: UNKNOWN}))
    assert body["error"]["code"] == -32020


async def test_unknown_cursor_on_an_old_node_is_empty(
    aiohttp_server: Any, session: aiohttp.ClientSession
) -> None:
    fake = FakeRpc(unknown_cursor="empty")
    fake.add_synthetic(WALLET, 5)
    url = fake.url(await aiohttp_server(fake.app()))
    _, body = await post(session, url, call("getSignaturesForAddress", WALLET, {"before": UNKNOWN}))
    assert body["result"] == []


async def test_get_transaction_needs_max_supported_version_for_v0(
    aiohttp_server: Any, session: aiohttp.ClientSession
) -> None:
    fake = FakeRpc()
    fake.load_samples(DATA)
    url = fake.url(await aiohttp_server(fake.app()))
    v0 = "4bfz4iWGpFRgSYxSjDZCETUug9fuVW73AFdhjH1JkdEoVewtusywaY37WSrYr2zVjDzoK6YigqREpXJUViaUo5tb"
    _, body = await post(session, url, call("getTransaction", v0, {"encoding": "jsonParsed"}))
    assert body["error"]["code"] == -32015
    config = {"encoding": "jsonParsed", "maxSupportedTransactionVersion": 0}
    _, body = await post(session, url, call("getTransaction", v0, config))
    assert body["result"]["slot"] == 415623442
    _, body = await post(session, url, call("getTransaction", UNKNOWN, config))
    assert body["result"] is None


async def test_batch_answers_each_call_in_order(
    fake: FakeRpc, url: str, session: aiohttp.ClientSession
) -> None:
    sigs = [e.signature for e in fake.histories[WALLET].entries[:3]]
    batch = [
        call("getTransaction", s, {"encoding": "jsonParsed"}, rpc_id=i) for i, s in enumerate(sigs)
    ]
    batch.append(call("noSuchMethod", rpc_id=9))
    status, body = await post(session, url, batch)
    assert status == 200 and [a["id"] for a in body] == [0, 1, 2, 9]
    assert [a["result"]["transaction"]["signatures"][0] for a in body[:3]] == sigs
    assert body[3]["error"]["code"] == -32601
    assert fake.log[-1].method == "batch" and fake.log[-1].calls[:1] == ("getTransaction",)
    _, body = await post(session, url, [])
    assert body["error"]["code"] == -32600


async def test_batches_can_be_refused(aiohttp_server: Any, session: aiohttp.ClientSession) -> None:
    fake = FakeRpc(batches=False)
    url = fake.url(await aiohttp_server(fake.app()))
    _, body = await post(session, url, [call("getSignaturesForAddress", WALLET)])
    assert isinstance(body, dict) and body["error"]["code"] == -32600


async def test_gtfa_can_be_missing(aiohttp_server: Any, session: aiohttp.ClientSession) -> None:
    fake = FakeRpc(gtfa=False)
    url = fake.url(await aiohttp_server(fake.app()))
    _, body = await post(session, url, call("getTransactionsForAddress", WALLET, FULL))
    assert body["error"]["code"] == -32601


async def test_new_transaction_lands_on_a_running_server(
    fake: FakeRpc, url: str, session: aiohttp.ClientSession
) -> None:
    newest = FakeRpc().transaction(fake.histories[WALLET].entries[0].signature)
    other = FakeRpc()
    other.add_synthetic("CKs1E69a2e9TmH4mKKLrXFF8kD3ZnwKjoEuXa6sz9WqX", 1)
    landed = other.transaction(
        other.histories["CKs1E69a2e9TmH4mKKLrXFF8kD3ZnwKjoEuXa6sz9WqX"].entries[0].signature
    )
    assert newest is None and landed is not None
    fake.add_transaction(WALLET, landed)
    _, body = await post(session, url, call("getSignaturesForAddress", WALLET, {"limit": 1}))
    assert body["result"][0]["signature"] == landed["transaction"]["signatures"][0]


async def test_wrong_key_is_401(fake: FakeRpc, url: str, session: aiohttp.ClientSession) -> None:
    status, _ = await post(
        session, url.replace("k3y", "nope"), call("getSignaturesForAddress", WALLET)
    )
    assert status == 401


async def test_rate_limit_answers_429_with_retry_after(
    fake: FakeRpc, url: str, session: aiohttp.ClientSession
) -> None:
    fake.faults.limiter = TokenBucket(1, 1, clock=fake.clock)
    assert (await post(session, url, call("getSignaturesForAddress", WALLET)))[0] == 200
    async with session.post(url, json=call("getSignaturesForAddress", WALLET)) as response:
        assert response.status == 429 and response.headers["Retry-After"] == "1"
        assert (await response.json())["error"]["code"] == -32005
    fake.clock.now += 1  # type: ignore[attr-defined]
    assert (await post(session, url, call("getSignaturesForAddress", WALLET)))[0] == 200
    assert [e.fault for e in fake.log] == [None, "rate_limit", None]


@pytest.mark.parametrize("meter_calls", [False, True])
async def test_metered_calls_make_a_batch_cost_each_of_its_calls(
    fake: FakeRpc, url: str, session: aiohttp.ClientSession, meter_calls: bool
) -> None:
    fake.meter_calls = meter_calls
    fake.faults.limiter = TokenBucket(10, 1, clock=fake.clock)
    sigs = [e.signature for e in fake.histories[WALLET].entries[:5]]
    batch = [call("getTransaction", sig, FULL, rpc_id=n) for n, sig in enumerate(sigs)]
    assert (await post(session, url, batch))[0] == 200  # a batch goes once a token is free
    fake.clock.now += 0.1  # type: ignore[attr-defined]
    status, _ = await post(session, url, call("getSignaturesForAddress", WALLET))
    assert status == (429 if meter_calls else 200)
    fake.clock.now += 0.4  # type: ignore[attr-defined]
    assert (await post(session, url, call("getSignaturesForAddress", WALLET)))[0] == 200


@pytest.mark.parametrize("code", [-32005, -32603, -32601, -32020])
async def test_injected_rpc_error_inside_http_200(
    fake: FakeRpc, url: str, session: aiohttp.ClientSession, code: int
) -> None:
    fake.faults.inject(
        Kind.RPC_ERROR, code=code, when=lambda e: e.method == "getTransactionsForAddress"
    )
    _, body = await post(session, url, call("getSignaturesForAddress", WALLET))  # not matched
    assert "result" in body
    status, body = await post(session, url, call("getTransactionsForAddress", WALLET, FULL))
    assert status == 200 and body["error"]["code"] == code
    _, body = await post(session, url, call("getTransactionsForAddress", WALLET, FULL))
    assert "result" in body  # once only


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_injected_5xx(
    fake: FakeRpc, url: str, session: aiohttp.ClientSession, status: int
) -> None:
    fake.faults.inject(Kind.STATUS, status=status, retry_after=2)
    async with session.post(url, json=call("getSignaturesForAddress", WALLET)) as response:
        assert response.status == status and response.headers["Retry-After"] == "2"


@pytest.mark.parametrize("kind", [Kind.MALFORMED, Kind.TRUNCATED])
async def test_injected_bad_bodies(
    fake: FakeRpc, url: str, session: aiohttp.ClientSession, kind: Kind
) -> None:
    fake.faults.inject(kind)
    async with session.post(url, json=call("getSignaturesForAddress", WALLET)) as response:
        assert response.status == 200
        with pytest.raises(ValueError):
            await response.json()


@pytest.mark.parametrize("kind", [Kind.RESET, Kind.RESET_BODY])
async def test_injected_resets(
    fake: FakeRpc, url: str, session: aiohttp.ClientSession, kind: Kind
) -> None:
    fake.faults.inject(kind)
    with pytest.raises(aiohttp.ClientError):
        async with session.post(url, json=call("getSignaturesForAddress", WALLET)) as response:
            await response.read()


async def test_injected_hang_times_out_the_client(fake: FakeRpc, url: str) -> None:
    fake.faults.inject(Kind.HANG)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.3)) as session:
        with pytest.raises(asyncio.TimeoutError):
            await post(session, url, call("getSignaturesForAddress", WALLET))
    assert fake.log[-1].fault == Kind.HANG and fake.log[-1].status is None


async def test_latency_delays_every_answer(
    fake: FakeRpc, url: str, session: aiohttp.ClientSession
) -> None:
    fake.faults.latency_s = 0.2
    loop = asyncio.get_running_loop()
    start = loop.time()
    await post(session, url, call("getSignaturesForAddress", WALLET))
    assert loop.time() - start >= 0.2


async def test_real_samples_are_served_for_their_fee_payer(
    aiohttp_server: Any, session: aiohttp.ClientSession
) -> None:
    fake = FakeRpc()
    fake.load_samples(DATA)
    url = fake.url(await aiohttp_server(fake.app()))
    payer = "35f43Y1q1EQuKPrDSN4KCuFCdR3oV8ahC4LxyRLYumsA"
    _, body = await post(session, url, call("getTransactionsForAddress", payer, FULL))
    trades = [parse_rpc_transaction(tx, payer) for tx in body["result"]["data"]]
    assert [t.dex for t in trades if t] == ["PUMP_AMM"]


def test_standalone_help() -> None:
    root = Path(__file__).parent.parent
    result = subprocess.run(
        [sys.executable, "-m", "tests.fake_rpc", "--help"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--no-gtfa" in result.stdout and "--synthetic" in result.stdout
