"""Sentry: off without a DSN, and no API key ever reaches it (checked on the wire)."""

from __future__ import annotations

import asyncio
import copy
import gzip
import itertools
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from aiohttp import web

from walletd.config import Settings
from walletd.observability.sentry import FILTERED, init_sentry, scrub

KEY = "wd_Ab3dEfGh1jKlMn0pQrStUvWxYz012345"  # shaped like a walletd key (32 alnum)
HELIUS_KEY = "0f3c2a6e-8d1b-4c57-9e2f-7a1b3c4d5e6f"
HELIUS_URL = f"https://api.helius.xyz/v0/addresses/x/transactions?api-key={HELIUS_KEY}"
MASKED = KEY[:10] + FILTERED


class FakeIngest:
    """Sentry's envelope endpoint: records each envelope's bytes (gunzipped) and items."""

    def __init__(self) -> None:
        self.raw: list[bytes] = []
        self.encodings: list[str] = []
        self.events: list[dict[str, Any]] = []
        self.got_event = asyncio.Event()

    async def envelope(self, request: web.Request) -> web.Response:
        self.encodings.append(request.headers.get("Content-Encoding", "identity"))
        body = await request.read()  # aiohttp inflates a gzip (or deflate) request body
        if body.startswith(b"\x1f\x8b"):  # unless some layer left it compressed
            body = gzip.decompress(body)
        self.raw.append(body)
        for header, payload in itertools.pairwise(body.split(b"\n")):
            if header.startswith(b"{") and json.loads(header).get("type") == "event":
                self.events.append(json.loads(payload))
                self.got_event.set()
        return web.json_response({"id": request.match_info["project"]})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/{project}/envelope/", self.envelope)
        return app


def stop_sentry() -> None:
    """Close the client and leave the SDK inactive, as if init had never run."""
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)


@pytest.fixture
def sentry_cleanup() -> Iterator[None]:
    yield
    stop_sentry()


async def boom(request: web.Request) -> web.Response:
    api_key = request.headers["X-API-Key"]  # a frame variable Sentry reports
    logging.getLogger("tests.sentry").warning("calling %s for %s", HELIUS_URL, api_key)
    raise RuntimeError(f"upstream {HELIUS_URL} failed for {api_key}")


def test_init_sentry_is_a_no_op_without_a_dsn() -> None:
    assert init_sentry(Settings(sentry_dsn=None)) is False
    assert sentry_sdk.get_client().dsn is None


def test_init_sentry_warns_when_sentry_sdk_is_missing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "sentry_sdk", None)  # what `import` sees when absent
    assert init_sentry(Settings(sentry_dsn="http://public@127.0.0.1:9/1")) is False
    assert [r.msg for r in caplog.records if r.name == "walletd.sentry"] == ["sentry_unavailable"]
    monkeypatch.undo()
    assert sentry_sdk.get_client().dsn is None


async def test_unhandled_error_reaches_sentry_without_any_key(
    aiohttp_server: Any, aiohttp_client: Any, sentry_cleanup: None
) -> None:
    ingest = FakeIngest()
    ingest_server = await aiohttp_server(ingest.app())
    dsn = f"http://public@127.0.0.1:{ingest_server.port}/1"
    assert init_sentry(Settings(env="test", sentry_dsn=dsn)) is True

    app = web.Application()
    app.router.add_get("/boom", boom)
    client = await aiohttp_client(app)
    resp = await client.get(
        "/boom",
        params={"api_key": KEY, "limit": "5"},
        headers={"Authorization": f"Bearer {KEY}", "X-API-Key": KEY},
    )
    assert resp.status == 500
    await asyncio.wait_for(ingest.got_event.wait(), 10)
    # flush() blocks until the SDK's thread has sent everything: keep the loop serving.
    await asyncio.to_thread(sentry_sdk.flush, 10)

    assert "gzip" in ingest.encodings  # what was checked is what went over the wire, inflated
    event = ingest.events[0]
    assert event["environment"] == "test"
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    assert MASKED in event["exception"]["values"][-1]["value"]
    headers = {name.lower(): value for name, value in event["request"]["headers"].items()}
    assert headers["authorization"] == headers["x-api-key"] == FILTERED
    assert isinstance(event["_meta"]["request"]["headers"]["Authorization"], dict)  # schema kept
    assert event["request"]["query_string"] == f"api_key={FILTERED}&limit=5"
    for raw in ingest.raw:
        assert KEY.encode() not in raw
        assert KEY[10:].encode() not in raw
        assert HELIUS_KEY.encode() not in raw


def test_scrub_removes_keys_anywhere_in_an_event() -> None:
    event: dict[str, Any] = {
        "message": f"key {KEY} rejected",
        "request": {
            "url": "http://walletd/v4/wallet/x/stream",
            "query_string": f"api_key={KEY}&before=abc",
            "headers": {"Authorization": f"Bearer {KEY}", "x-api-key": "opaque", "Accept": "*/*"},
        },
        "exception": {
            "values": [
                {
                    "type": "ClientResponseError",
                    "value": f"503, url={HELIUS_URL}",
                    "stacktrace": {
                        "frames": [
                            {
                                "vars": {
                                    "api_key": "'not wd-shaped, secret by name'",
                                    "request": f"<Request GET /stream?api_key={KEY} >",
                                    "keys": [KEY, f"'{KEY[:20]}..."],  # truncated by Sentry
                                }
                            }
                        ]
                    },
                }
            ]
        },
        "breadcrumbs": {
            "values": [
                {"data": {"url": HELIUS_URL, "http.query": "page=2&token=t0ken"}},
                {"message": "ok", "data": {"headers": [["X-API-Key", KEY], ["Accept", "x"]]}},
            ]
        },
        "extra": {KEY: "a key as a dict key", "count": 3, "none": None, "ok": True},
        "_meta": {"request": {"headers": {"Authorization": {"": {"rem": [["!config", "s"]]}}}}},
    }
    original = copy.deepcopy(event)
    cleaned = scrub(event, {})
    assert cleaned is not None
    text = json.dumps(cleaned)
    for secret in (KEY[10:], KEY[10:20], HELIUS_KEY, "t0ken", "secret by name"):
        assert secret not in text
    assert cleaned["message"] == f"key {MASKED} rejected"
    assert cleaned["request"]["query_string"] == f"api_key={FILTERED}&before=abc"
    assert cleaned["request"]["headers"] == {
        "Authorization": FILTERED,
        "x-api-key": FILTERED,
        "Accept": "*/*",
    }
    assert cleaned["exception"]["values"][0]["value"].endswith(f"?api-key={FILTERED}")
    assert cleaned["breadcrumbs"]["values"][1]["data"]["headers"] == [
        ["X-API-Key", FILTERED],
        ["Accept", "x"],
    ]
    assert cleaned["extra"] == {
        MASKED: "a key as a dict key",
        "count": 3,
        "none": None,
        "ok": True,
    }
    assert cleaned["_meta"] == original["_meta"]  # Sentry's annotations, not values
    assert event == original  # the SDK's own copy is left alone


def test_scrub_drops_an_event_it_cannot_walk() -> None:
    event: dict[str, Any] = {"extra": {}}
    event["extra"]["self"] = event  # a cycle: recursion fails, so the event is dropped
    assert scrub(event, {}) is None


def test_scrub_keeps_text_without_keys() -> None:
    crumb = {"category": "http", "data": {"url": "https://example.com/a?wd=1&key=value"}}
    assert scrub(crumb, {}) == crumb
