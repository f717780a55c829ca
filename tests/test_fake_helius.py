"""The fake Helius over real HTTP: protocol, data, every fault, the rate limit and the log."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import base58
import pytest

from tests.fake_helius import (
    RPC,
    TRANSACTIONS,
    WALLETDOCTOR_WALLET,
    FakeHelius,
    Kind,
    _parse_args,
    sample_records,
)
from tests.fakes import demo_pages
from walletd.upstream.demo import EMPTY_DEMO_WALLET, LARGE_DEMO_WALLET

WALLET = "3JoVBiQEA2QKsq7TzW5ez5jVRtbbYgTNijoZzp5qgkr2"  # 111 demo transactions
UNKNOWN_SIGNATURE = base58.b58encode(bytes(range(64))).decode()
NFT_BUYER = "CKs1E69a2e9TmH4mKKLrXFF8kD3ZnwKjoEuXa6sz9WqX"


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def fake(clock: ManualClock) -> FakeHelius:
    fake = FakeHelius("k3y", clock=clock)
    fake.add_synthetic(WALLET)
    return fake


@pytest.fixture
async def server(aiohttp_server: Any, fake: FakeHelius) -> Any:
    return await aiohttp_server(fake.app())


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def signatures(
    session: aiohttp.ClientSession, url: str, address: str, **config: Any
) -> tuple[int, Any]:
    """POST getSignaturesForAddress; (HTTP status, decoded body)."""
    body = {"jsonrpc": "2.0", "id": 7, "method": "getSignaturesForAddress"}
    body["params"] = [address, config] if config else [address]
    async with session.post(url, json=body) as response:
        return response.status, await response.json()


async def transactions(session: aiohttp.ClientSession, url: str, sigs: list[str]) -> Any:
    async with session.post(url, json={"transactions": sigs}) as response:
        assert response.status == 200
        return await response.json()


def listed(body: Any) -> list[str]:
    return [entry["signature"] for entry in body["result"]]


# --- protocol -------------------------------------------------------------------------


async def test_paging_with_before_returns_the_next_older_page_without_overlap(
    aiohttp_server: Any, session: aiohttp.ClientSession
) -> None:
    fake = FakeHelius()
    txs = fake.add_synthetic(LARGE_DEMO_WALLET, 2500)
    server = await aiohttp_server(fake.app())
    url = fake.rpc_url(server, with_key=True)
    pages: list[list[str]] = []
    before = None
    while True:
        config: dict[str, Any] = {"limit": 1000} | ({"before": before} if before else {})
        status, body = await signatures(session, url, LARGE_DEMO_WALLET, **config)
        assert status == 200
        if not body["result"]:
            break
        pages.append(listed(body))
        before = pages[-1][-1]
    assert [len(p) for p in pages] == [1000, 1000, 500]
    assert list(itertools.chain(*pages)) == [tx["signature"] for tx in txs]
    status, body = await signatures(
        session, url, LARGE_DEMO_WALLET, limit=3, before=txs[9]["signature"]
    )
    assert listed(body) == [tx["signature"] for tx in txs[10:13]]


async def test_signature_entries_carry_the_transactions_slot_time_and_error(
    fake: FakeHelius, server: Any, session: aiohttp.ClientSession
) -> None:
    _, body = await signatures(session, fake.rpc_url(server, with_key=True), WALLET)
    assert body["jsonrpc"] == "2.0" and body["id"] == 7
    assert len(body["result"]) == 111
    failed = 0
    for entry in body["result"]:
        tx = fake.transaction(entry["signature"])
        assert tx is not None
        assert entry["slot"] == tx["slot"] and entry["blockTime"] == tx["timestamp"]
        assert entry["err"] == tx["transactionError"]
        assert entry["memo"] is None and entry["confirmationStatus"] == "finalized"
        failed += entry["err"] is not None
    assert failed > 0  # the demo history has failed swaps, listed with their error
    slots = [entry["slot"] for entry in body["result"]]
    assert slots == sorted(slots, reverse=True)


async def test_synthetic_history_is_the_demo_sources_history(fake: FakeHelius) -> None:
    pages = await demo_pages(WALLET)
    demo = [tx for page in pages for tx in page.transactions]
    served = [fake.transaction(entry.signature) for entry in fake.histories[WALLET].entries]
    assert served == demo


async def test_limit_is_at_most_1000_and_defaults_to_1000(
    aiohttp_server: Any, session: aiohttp.ClientSession
) -> None:
    fake = FakeHelius()
    fake.add_synthetic(LARGE_DEMO_WALLET, 1200)
    url = fake.rpc_url(await aiohttp_server(fake.app()), with_key=True)
    _, body = await signatures(session, url, LARGE_DEMO_WALLET, limit=1000)
    assert len(body["result"]) == 1000
    _, body = await signatures(session, url, LARGE_DEMO_WALLET)
    assert len(body["result"]) == 1000
    for limit in (1001, 0):
        status, body = await signatures(session, url, LARGE_DEMO_WALLET, limit=limit)
        assert status == 200
        assert body["error"] == {"code": -32602, "message": "Invalid limit; max 1000"}
        assert body["id"] == 7 and "result" not in body


async def test_unknown_before_is_an_error_as_agave_answers_it(
    fake: FakeHelius, server: Any, session: aiohttp.ClientSession
) -> None:
    url = fake.rpc_url(server, with_key=True)
    _, body = await signatures(session, url, WALLET, before=UNKNOWN_SIGNATURE)
    assert body["error"]["code"] == -32020
    assert UNKNOWN_SIGNATURE in body["error"]["message"]


async def test_unknown_before_can_answer_empty_like_older_nodes(
    aiohttp_server: Any, session: aiohttp.ClientSession
) -> None:
    fake = FakeHelius(unknown_before="empty", synthetic={WALLET: None})
    url = fake.rpc_url(await aiohttp_server(fake.app()), with_key=True)
    _, body = await signatures(session, url, WALLET, before=UNKNOWN_SIGNATURE)
    assert body["result"] == []


async def test_an_address_without_history_lists_nothing(
    fake: FakeHelius, server: Any, session: aiohttp.ClientSession
) -> None:
    _, body = await signatures(session, fake.rpc_url(server, with_key=True), EMPTY_DEMO_WALLET)
    assert body["result"] == []


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ({"jsonrpc": "2.0", "id": 1, "method": "getBalance", "params": [WALLET]}, -32601),
        ({"jsonrpc": "2.0", "id": 1, "method": "getSignaturesForAddress", "params": ["x"]}, -32602),
        (
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "getSignaturesForAddress",
                "params": [WALLET, {"before": "not-a-signature"}],
            },
            -32602,
        ),
        ([{"jsonrpc": "2.0", "id": 1, "method": "getSignaturesForAddress"}], -32600),
    ],
)
async def test_bad_requests_get_json_rpc_errors(
    fake: FakeHelius, server: Any, session: aiohttp.ClientSession, message: Any, code: int
) -> None:
    async with session.post(fake.rpc_url(server, with_key=True), json=message) as response:
        assert response.status == 200
        body = await response.json()
    assert body["jsonrpc"] == "2.0" and body["error"]["code"] == code


async def test_a_body_that_is_not_json_is_a_parse_error(
    fake: FakeHelius, server: Any, session: aiohttp.ClientSession
) -> None:
    async with session.post(fake.rpc_url(server, with_key=True), data=b"{nope") as response:
        body = await response.json()
    assert body["error"]["code"] == -32700 and body["id"] is None


async def test_transactions_come_in_the_order_asked_and_unknown_ones_are_absent(
    fake: FakeHelius, server: Any, session: aiohttp.ClientSession
) -> None:
    sigs = [e.signature for e in fake.histories[WALLET].entries]
    asked = [sigs[5], UNKNOWN_SIGNATURE, sigs[0], sigs[40]]
    answer = await transactions(session, fake.transactions_url(server), asked)
    assert [tx["signature"] for tx in answer] == [sigs[5], sigs[0], sigs[40]]
    assert answer[1] == fake.transaction(sigs[0])
    entry = fake.log[-1]
    assert (entry.signatures, entry.returned, entry.omitted) == (4, 3, (UNKNOWN_SIGNATURE,))


async def test_transaction_batches_hold_at_most_100(
    fake: FakeHelius, server: Any, session: aiohttp.ClientSession
) -> None:
    sigs = [e.signature for e in fake.histories[WALLET].entries]
    assert len(await transactions(session, fake.transactions_url(server), sigs[:100])) == 100
    bodies: list[dict[str, Any]] = [
        {"transactions": sigs[:101]},
        {"transactions": []},
        {"signatures": sigs[:2]},
    ]
    for body in bodies:
        async with session.post(fake.transactions_url(server), json=body) as response:
            assert response.status == 400
            assert "error" in await response.json()


async def test_urls_are_base_urls_for_the_settings(fake: FakeHelius, server: Any) -> None:
    base = f"http://{server.host}:{server.port}"
    assert fake.rpc_url(server) == fake.api_url(server) == base
    assert fake.rpc_url(server, with_key=True) == f"{base}/?api-key=k3y"
    assert fake.transactions_url(server) == f"{base}/v0/transactions?api-key=k3y"


# --- API key --------------------------------------------------------------------------


@pytest.mark.parametrize("wrong_key_status", [401, 403])
async def test_missing_key_is_401_and_a_wrong_one_401_or_403(
    aiohttp_server: Any, session: aiohttp.ClientSession, wrong_key_status: int
) -> None:
    fake = FakeHelius("right", wrong_key_status=wrong_key_status)
    base = fake.base_url(await aiohttp_server(fake.app()))
    cases = [
        (f"{base}/", 401),
        (f"{base}/?api-key=wrong", wrong_key_status),
        (f"{base}/v0/transactions", 401),
        (f"{base}/v0/transactions?api-key=wrong", wrong_key_status),
    ]
    for url, status in cases:
        async with session.post(url, json={"transactions": []}) as response:
            assert response.status == status
            assert isinstance((await response.json())["error"], str)
    assert [(e.status, e.fault) for e in fake.log] == [(s, "auth") for _, s in cases]


# --- faults ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 429])
async def test_injected_status_is_answered_then_healed(
    fake: FakeHelius, server: Any, session: aiohttp.ClientSession, status: int
) -> None:
    fake.faults.rpc.inject("status", status=status, retry_after=2, times=2)
    url = fake.rpc_url(server, with_key=True)
    for _ in range(2):
        async with session.post(url, json={}) as response:
            assert response.status == status
            assert response.headers["Retry-After"] == "2"
    code, body = await signatures(session, url, WALLET, limit=5)
    assert code == 200 and len(body["result"]) == 5
    assert [e.status for e in fake.log] == [status, status, 200]


async def test_reset_before_the_response_raises_a_client_error(
    fake: FakeHelius, server: Any, session: aiohttp.ClientSession
) -> None:
    fake.faults.transactions.inject(Kind.RESET)
    sigs = [e.signature for e in fake.histories[WALLET].entries][:3]
    with pytest.raises(aiohttp.ClientError):
        await transactions(session, fake.transactions_url(server), sigs)
    assert len(await transactions(session, fake.transactions_url(server), sigs)) == 3
    assert [(e.fault, e.status) for e in fake.log] == [("reset", None), (None, 200)]


async def test_reset_in_the_middle_of_the_body_raises_a_payload_error(
    fake: FakeHelius, server: Any, session: aiohttp.ClientSession
) -> None:
    fake.faults.rpc.inject("reset_body")
    async with session.post(
        fake.rpc_url(server, with_key=True),
        json={"jsonrpc": "2.0", "id": 1, "method": "getSignaturesForAddress", "params": [WALLET]},
    ) as response:
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()


async def test_a_hang_is_only_ended_by_the_clients_timeout(
    fake: FakeHelius, server: Any, session: aiohttp.ClientSession
) -> None:
    fake.faults.rpc.inject("hang")
    url = fake.rpc_url(server, with_key=True)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with session.post(url, json={}, timeout=aiohttp.ClientTimeout(total=0.3)):
            pass
    assert time.monotonic() - started >= 0.3
    status, _ = await signatures(session, url, WALLET, limit=1)
    assert status == 200
    assert fake.log[0].fault == "hang" and fake.log[0].status is None


async def test_a_hung_request_does_not_hold_up_server_shutdown(
    fake: FakeHelius, server: Any, session: aiohttp.ClientSession
) -> None:
    arrived = asyncio.Event()

    def seen(entry: Any) -> bool:
        arrived.set()
        return True

    fake.faults.rpc.inject("hang", when=seen)
    request = asyncio.ensure_future(session.post(fake.rpc_url(server, with_key=True), json={}))
    await asyncio.wait_for(arrived.wait(), 5)
    started = time.monotonic()
    await server.close()
    assert time.monotonic() - started < 5
    with pytest.raises(aiohttp.ClientError):
        await request


@pytest.mark.parametrize("kind", ["malformed", "truncated"])
async def test_bad_json_bodies_fail_to_decode(
    fake: FakeHelius, server: Any, session: aiohttp.ClientSession, kind: str
) -> None:
    fake.faults.transactions.inject(kind)
    sigs = [e.signature for e in fake.histories[WALLET].entries][:10]
    async with session.post(fake.transactions_url(server), json={"transactions": sigs}) as r:
        assert r.status == 200 and r.content_type == "application/json"
        text = await r.text()
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    assert fake.log[0].fault == kind


async def test_an_injected_json_rpc_error_object(
    fake: FakeHelius, server: Any, session: aiohttp.ClientSession
) -> None:
    fake.faults.rpc.inject("rpc_error", code=-32005, message="Node is unhealthy")
    status, body = await signatures(session, fake.rpc_url(server, with_key=True), WALLET)
    assert status == 200
    assert body == {
        "jsonrpc": "2.0",
        "error": {"code": -32005, "message": "Node is unhealthy"},
        "id": 7,
    }


async def test_short_batches_drop_transactions_and_log_which(
    fake: FakeHelius, server: Any, session: aiohttp.ClientSession
) -> None:
    fake.faults.transactions.inject("short", drop=3)
    sigs = [e.signature for e in fake.histories[WALLET].entries][:10]
    answer = await transactions(session, fake.transactions_url(server), sigs)
    got = [tx["signature"] for tx in answer]
    entry = fake.log[0]
    assert len(got) == 7 and len(entry.omitted) == 3
    assert got == [s for s in sigs if s not in entry.omitted]  # order kept, gaps inside
    assert entry.omitted[0] != sigs[0] and entry.omitted != tuple(sigs[-3:])
    assert (entry.fault, entry.returned) == ("short", 7)


async def test_rules_skip_match_and_expire(
    fake: FakeHelius, server: Any, session: aiohttp.ClientSession
) -> None:
    paged = fake.faults.rpc.inject("status", status=502, skip=1, when=lambda e: e.before)
    url = fake.rpc_url(server, with_key=True)
    sigs = [e.signature for e in fake.histories[WALLET].entries]
    statuses = []
    for before in (None, sigs[0], None, sigs[1], sigs[2]):
        config = {"limit": 2} | ({"before": before} if before else {})
        body = {"jsonrpc": "2.0", "id": 1, "method": "getSignaturesForAddress"}
        async with session.post(url, json=body | {"params": [WALLET, config]}) as response:
            statuses.append(response.status)
    assert statuses == [200, 200, 200, 502, 200]
    assert paged.applied == 1 and fake.faults.rpc.rules == []


async def test_latency_and_delay_are_lower_bounds(
    fake: FakeHelius, server: Any, session: aiohttp.ClientSession
) -> None:
    fake.faults.set_latency(0.05)
    fake.faults.rpc.inject("delay", delay_s=0.1)
    url = fake.rpc_url(server, with_key=True)
    started = time.monotonic()
    await signatures(session, url, WALLET, limit=1)
    assert time.monotonic() - started >= 0.15
    started = time.monotonic()
    await signatures(session, url, WALLET, limit=1)
    assert time.monotonic() - started >= 0.05


async def test_a_rule_for_an_unknown_kind_is_refused(fake: FakeHelius) -> None:
    with pytest.raises(ValueError):
        fake.faults.rpc.inject("explode")
    with pytest.raises(ValueError):
        fake.faults.rpc.inject("hang", times=0)


# --- rate limit -----------------------------------------------------------------------


async def test_rps_limit_answers_429_with_retry_after_beyond_the_bucket(
    fake: FakeHelius, server: Any, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    fake.faults.limit_rps(4, burst=2)
    url = fake.rpc_url(server, with_key=True)

    async def status() -> tuple[int, str | None]:
        body = {"jsonrpc": "2.0", "id": 3, "method": "getSignaturesForAddress"}
        async with session.post(url, json=body | {"params": [WALLET, {"limit": 1}]}) as r:
            payload = await r.json()
            if r.status == 429:
                assert payload["error"]["code"] == -32429 and payload["id"] == 3
            return r.status, r.headers.get("Retry-After")

    assert [await status() for _ in range(3)] == [(200, None), (200, None), (429, "1")]
    clock.now += 0.25  # one token back at 4 per second
    assert [await status() for _ in range(2)] == [(200, None), (429, "1")]
    clock.now += 10  # refills up to the burst, no further
    assert [(await status())[0] for _ in range(3)] == [200, 200, 429]
    assert [e.fault for e in fake.log].count("rate_limit") == 3


async def test_rps_limits_are_per_endpoint_unless_shared(
    fake: FakeHelius, server: Any, session: aiohttp.ClientSession
) -> None:
    sigs = [e.signature for e in fake.histories[WALLET].entries][:1]

    async def both() -> tuple[int, int]:
        async with session.post(fake.transactions_url(server), json={"transactions": sigs}) as r:
            api = r.status
        rpc, _ = await signatures(session, fake.rpc_url(server, with_key=True), WALLET, limit=1)
        return api, rpc

    fake.faults.limit_rps(1, burst=1)
    assert await both() == (200, 200)
    fake.faults.limit_rps(1, burst=1, shared=True)
    assert await both() == (200, 429)


async def test_retry_after_rounds_up_to_whole_seconds(
    fake: FakeHelius, server: Any, session: aiohttp.ClientSession
) -> None:
    fake.faults.limit_rps(0.2, burst=1)  # a token every 5 s
    sigs = [e.signature for e in fake.histories[WALLET].entries][:1]
    url = fake.transactions_url(server)
    async with session.post(url, json={"transactions": sigs}) as response:
        assert response.status == 200
    async with session.post(url, json={"transactions": sigs}) as response:
        assert response.status == 429 and response.headers["Retry-After"] == "5"
        assert "error" in await response.json()


# --- request log ----------------------------------------------------------------------


async def test_the_log_records_every_request_in_order(
    fake: FakeHelius, server: Any, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    url = fake.rpc_url(server, with_key=True)
    _, body = await signatures(session, url, WALLET, limit=100)
    clock.now += 1
    last = listed(body)[-1]
    await signatures(session, url, WALLET, limit=100, before=last)
    clock.now += 1
    await transactions(session, fake.transactions_url(server), listed(body)[:3])
    rpc, api = fake.calls(RPC), fake.calls(TRANSACTIONS)
    assert fake.log == rpc + api
    assert [(e.before, e.limit, e.returned, e.status) for e in rpc] == [
        (None, 100, 100, 200),
        (last, 100, 11, 200),
    ]
    assert all(e.method == "getSignaturesForAddress" and e.address == WALLET for e in rpc)
    assert (api[0].signatures, api[0].asked, api[0].returned) == (3, tuple(listed(body)[:3]), 3)
    assert [e.t for e in fake.log] == [1000.0, 1001.0, 1002.0]
    assert all(e.t_end == e.t for e in fake.log)  # the manual clock did not move meanwhile


# --- real samples ---------------------------------------------------------------------


async def test_real_samples_are_served_by_signature(
    aiohttp_server: Any, session: aiohttp.ClientSession, helius_dir: Path
) -> None:
    fake = FakeHelius(samples_dir=helius_dir)
    server = await aiohttp_server(fake.app())
    debug = json.loads((helius_dir / "walletdoctor_3JoVBiQE_debug.json").read_text())
    nft = json.loads((helius_dir / "helius_docs_webhook_enhanced_nft_sale.json").read_text())[0]
    asked = [nft["signature"]] + [tx["signature"] for tx in debug]
    answer = await transactions(session, fake.transactions_url(server), asked)
    assert answer == [nft, *debug]  # full records, not the partial copies of the analysis


async def test_real_samples_list_each_wallets_history_newest_first(
    aiohttp_server: Any, session: aiohttp.ClientSession, helius_dir: Path
) -> None:
    fake = FakeHelius(samples_dir=helius_dir)
    url = fake.rpc_url(await aiohttp_server(fake.app()), with_key=True)
    _, body = await signatures(session, url, WALLETDOCTOR_WALLET)
    distinct = {r["signature"] for a, r in sample_records(helius_dir) if a == WALLETDOCTOR_WALLET}
    assert len(body["result"]) == len(distinct) == 30
    times = [entry["blockTime"] for entry in body["result"]]
    assert times == sorted(times, reverse=True)
    for entry in body["result"]:
        tx = fake.transaction(entry["signature"])
        assert tx is not None and entry["slot"] == tx.get("slot")
    _, body = await signatures(session, url, WALLETDOCTOR_WALLET, limit=5, before=listed(body)[19])
    assert len(body["result"]) == 5 and all(e["slot"] is None for e in body["result"])
    _, body = await signatures(session, url, NFT_BUYER)
    assert [e["slot"] for e in body["result"]] == [171942732]


# --- standalone -----------------------------------------------------------------------


def test_command_line_arguments() -> None:
    synthetic = ["--synthetic", f"{WALLET}=20", "--synthetic", EMPTY_DEMO_WALLET]
    args = _parse_args(["--port", "9", "--latency-ms", "50", "--rps", "50", *synthetic])
    assert (args.port, args.latency_ms, args.rps, args.shared_rps) == (9, 50.0, 50.0, False)
    assert args.synthetic == [(WALLET, 20), (EMPTY_DEMO_WALLET, None)]


async def test_serve_runs_standalone(session: aiohttp.ClientSession) -> None:
    fake = FakeHelius(synthetic={WALLET: 20})
    runner = await fake.serve("127.0.0.1", 0)
    try:
        host, port = runner.addresses[0][:2]
        status, body = await signatures(
            session, f"http://{host}:{port}/?api-key={fake.api_key}", WALLET
        )
        assert status == 200 and len(body["result"]) == 20
    finally:
        await runner.cleanup()
