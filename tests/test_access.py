"""Access control end to end (SPEC §3): keys, scopes, windows, stream caps, revocation."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from tests.clocks import FakeClock
from tests.fakes import ListSource, demo_pages
from tests.sse_client import read_events
from tests.support import WALLET
from tests.waiting import eventually
from walletd.appkeys import KEYSTORE, STREAMS
from walletd.auth.keys import KeyStore

STREAM = f"/v4/wallet/{WALLET}/stream"


async def held_source():
    """A source whose second page never comes: streams stay open until stopped."""
    pages = await demo_pages(WALLET, page_size=30)
    return ListSource.from_pages(pages, gates={1: asyncio.Event()})


def store_of(client) -> KeyStore:
    return client.server.app[KEYSTORE]


async def new_key(client, scopes=("stream",), expires_at=None) -> str:
    key, _ = await store_of(client).create("test", scopes, expires_at)
    return key


async def error_of(resp):
    assert resp.headers["Content-Type"].startswith("application/json")
    return (await resp.json())["code"]


async def test_no_key_is_auth_required_with_a_bearer_challenge(serve, keyed):
    client = await serve(**keyed)
    resp = await client.get(STREAM)
    assert resp.status == 401 and await error_of(resp) == "AUTH_REQUIRED"
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert (await client.get("/health")).status == 200  # probes need no key
    assert (await client.get("/ready")).status == 200


@pytest.mark.parametrize("how", ["bearer", "header", "query"])
async def test_a_key_is_read_from_each_place(serve, keyed, how):
    client = await serve(**keyed)
    key = await new_key(client)
    where = {
        "bearer": {"headers": {"Authorization": f"Bearer {key}"}},
        "header": {"headers": {"X-API-Key": key}},
        "query": {"params": {"api_key": key}},
    }[how]
    resp = await client.get(STREAM, **where)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    await resp.read()


async def test_bearer_wins_over_the_other_places(serve, keyed):
    client = await serve(**keyed)
    key = await new_key(client)
    junk = "wd_" + "A" * 32
    ok = await client.get(STREAM, headers={"Authorization": f"Bearer {key}", "X-API-Key": junk})
    assert ok.status == 200
    await ok.read()
    bad = await client.get(STREAM, headers={"Authorization": f"Bearer {junk}", "X-API-Key": key})
    assert bad.status == 401 and await error_of(bad) == "INVALID_API_KEY"


async def test_every_kind_of_bad_key_is_invalid(serve, keyed):
    client = await serve(**keyed)
    revoked_key, revoked = await store_of(client).create("r", ["stream"], None)
    await store_of(client).revoke(revoked.id)
    expired_key, expiring = await store_of(client).create("e", ["stream"], None)
    await store_of(client).rotate(expiring.id, overlap_s=0)  # the old key expires now
    for headers in (
        {"Authorization": "Bearer wd_short"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"X-API-Key": "wd_" + "B" * 32},  # well formed, unknown
        {"X-API-Key": revoked_key},
        {"X-API-Key": expired_key},
    ):
        resp = await client.get(STREAM, headers=headers)
        assert resp.status == 401, headers
        assert await error_of(resp) == "INVALID_API_KEY"


async def test_a_key_without_the_scope_is_forbidden(serve, keyed):
    client = await serve(**keyed)
    key = await new_key(client, scopes=("metrics",))
    resp = await client.get(STREAM, headers={"X-API-Key": key})
    assert resp.status == 403 and await error_of(resp) == "FORBIDDEN"


async def test_a_key_created_by_another_process_works_without_a_restart(serve, keyed):
    from walletd.auth.keys import open_keystore
    from walletd.config import Settings

    client = await serve(**keyed)
    other = open_keystore(Settings.from_env(keyed))  # the `walletd keys` command
    key, _ = await other.create("later", ["stream"], None)
    await other.close()

    async def accepted() -> bool:
        async with client.get(STREAM, headers={"X-API-Key": key}) as resp:
            return resp.status == 200

    await eventually(accepted, within_s=5, every_s=0.1, what="the new key picked up")


async def test_the_window_refuses_the_51st_request_with_an_exact_retry_after(serve, keyed):
    client = await serve(**keyed, RATE_LIMIT_REQUESTS=50, RATE_LIMIT_WINDOW=60)
    key = await new_key(client)
    headers = {"X-API-Key": key}
    started = time.monotonic()
    for n in range(50):
        resp = await client.get(STREAM, headers=headers, params={"limit": "x"})  # 400s count
        assert resp.status == 400
        assert resp.headers["RateLimit-Limit"] == "50"
        assert resp.headers["RateLimit-Remaining"] == str(49 - n)
    refused = await client.get(STREAM, headers=headers)
    assert refused.status == 429 and await error_of(refused) == "RATE_LIMITED"
    elapsed = time.monotonic() - started
    retry_after = int(refused.headers["Retry-After"])
    assert 60 - elapsed - 1 <= retry_after <= 60
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert int(refused.headers["RateLimit-Reset"]) == retry_after
    # Refusals are not counted, and other keys have windows of their own.
    other = await new_key(client)
    assert (
        await client.get(STREAM, headers={"X-API-Key": other}, params={"limit": "x"})
    ).status == 400


async def test_a_refused_caller_is_allowed_again_after_retry_after(serve, keyed):
    clock = FakeClock()
    client = await serve(**keyed, clock=clock, RATE_LIMIT_REQUESTS=2, RATE_LIMIT_WINDOW=30)
    headers = {"X-API-Key": await new_key(client)}
    for _ in range(2):
        assert (await client.get(STREAM, headers=headers, params={"limit": "x"})).status == 400
    clock.advance(10)
    refused = await client.get(STREAM, headers=headers)
    assert refused.status == 429
    retry_after = int(refused.headers["Retry-After"])
    assert retry_after == 20  # the oldest request leaves the window then
    clock.advance(retry_after - 1)
    assert (await client.get(STREAM, headers=headers)).status == 429  # not a second early
    clock.advance(1)  # what the client is told to wait
    assert (await client.get(STREAM, headers=headers, params={"limit": "x"})).status == 400


async def test_the_11th_stream_is_refused_and_a_disconnect_frees_a_slot(serve, keyed):
    source = await held_source()
    client = await serve(source=source, **keyed, RATE_LIMIT_STREAMING_CONNECTIONS=10)
    headers = {"X-API-Key": await new_key(client)}
    streams = [await client.get(STREAM, headers=headers) for _ in range(10)]
    for resp in streams:
        assert resp.status == 200
        await read_events(resp, 2)  # connected, first trades: the stream is running
    refused = await client.get(STREAM, headers=headers)
    assert refused.status == 429 and await error_of(refused) == "TOO_MANY_STREAMS"
    assert int(refused.headers["Retry-After"]) >= 1
    streams.pop().close()  # a client leaves
    registry = client.server.app[STREAMS]
    await eventually(lambda: len(registry) <= 9, within_s=5, what="the slot freed")
    again = await client.get(STREAM, headers=headers)
    assert again.status == 200
    again.close()
    for resp in streams:
        resp.close()


async def test_revoking_a_key_ends_its_open_streams(serve, keyed):
    source = await held_source()
    client = await serve(source=source, **keyed)
    key, record = await store_of(client).create("doomed", ["stream"], None)
    keep = await new_key(client)
    doomed = await client.get(STREAM, headers={"X-API-Key": key})
    kept = await client.get(STREAM, headers={"X-API-Key": keep})
    await read_events(doomed, 2)
    await read_events(kept, 2)
    await store_of(client).revoke(record.id)
    async with asyncio.timeout(10):
        events = await read_events(doomed)
    assert events[-1].name == "error" and events[-1].data["code"] == "INVALID_API_KEY"
    assert len(client.server.app[STREAMS]) == 1  # the other key's stream goes on
    kept.close()


async def test_rotation_keeps_the_old_key_for_the_overlap(serve, keyed):
    client = await serve(**keyed)
    old, record = await store_of(client).create("rotating", ["stream"], None)
    new, _ = await store_of(client).rotate(record.id, overlap_s=3600)
    for key in (old, new):
        resp = await client.get(STREAM, headers={"X-API-Key": key}, params={"limit": "1"})
        assert resp.status == 200
        await resp.read()
    current = await store_of(client).find(new)
    assert current is not None
    await store_of(client).rotate(current.id, overlap_s=0)
    resp = await client.get(STREAM, headers={"X-API-Key": new})
    assert resp.status == 401


async def test_without_keys_limits_apply_per_client_address(serve):
    env = {"RATE_LIMIT_REQUESTS": 2, "TRUSTED_PROXIES": "127.0.0.1"}
    client = await serve(**env)

    async def status(forwarded: str) -> int:
        resp = await client.get(
            STREAM, headers={"X-Forwarded-For": forwarded}, params={"limit": "x"}
        )
        return resp.status

    assert [await status("203.0.113.7") for _ in range(3)] == [400, 400, 429]
    # Another client behind the same proxy has a window of its own; a forged hop left of
    # the address our proxy saw does not change who is counted.
    assert await status("198.51.100.1") == 400
    assert await status("10.9.9.9, 203.0.113.7") == 429


async def test_an_untrusted_peer_cannot_choose_its_address(serve):
    client = await serve(RATE_LIMIT_REQUESTS=1)  # no TRUSTED_PROXIES
    first = await client.get(STREAM, headers={"X-Forwarded-For": "1.1.1.1"}, params={"limit": "x"})
    second = await client.get(STREAM, headers={"X-Forwarded-For": "2.2.2.2"}, params={"limit": "x"})
    assert (first.status, second.status) == (400, 429)


async def test_no_log_line_ever_holds_a_whole_key(serve, keyed, caplog):
    caplog.set_level(logging.DEBUG)
    source = await held_source()
    client = await serve(source=source, **keyed, RATE_LIMIT_REQUESTS=6)
    key, record = await store_of(client).create("logged", ["stream"], None)
    forbidden = await new_key(client, scopes=("metrics",))
    await client.get(STREAM, params={"api_key": key, "limit": "x"})
    await client.get(STREAM, headers={"Authorization": f"Bearer {key[:-1]}!"})
    await client.get(STREAM, headers={"X-API-Key": forbidden})
    open_stream = await client.get(STREAM, params={"api_key": key})
    await read_events(open_stream, 2)
    await store_of(client).revoke(record.id)
    async with asyncio.timeout(10):
        await read_events(open_stream)
    for _ in range(5):
        await client.get(STREAM, params={"api_key": key})  # revoked, then over the window
    assert caplog.records
    for secret in (key, forbidden, key[:-1]):
        assert secret not in caplog.text
    access = [r for r in caplog.records if r.getMessage() == "http_request"]
    assert access and all("api_key" not in str(r.__dict__.get("path")) for r in access)
