"""GET /openapi.json: a valid OpenAPI 3.1 document that matches the live server.

The document is checked three ways: by openapi-spec-validator, against the app's own
route table and error classes, and by schemathesis, which generates requests from it
against a real walletd on a socket and checks every response against it.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from typing import Any

import base58
import hypothesis
import jsonschema
import openapi_spec_validator
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.sse_client import parse
from tests.support import WALLET, make_settings
from walletd.api import demo_page
from walletd.api.jsonschema import SchemaBuilder
from walletd.api.openapi import DEMO_ASSETS, openapi_document
from walletd.app import create_app
from walletd.appkeys import KEYSTORE, LIFECYCLE, SETTINGS
from walletd.errors import ERROR_CODES, HTTP_ERRORS
from walletd.ops.lifecycle import Phase
from walletd.stream import events
from walletd.stream.events import ADDRESS_PATTERN
from walletd.upstream.demo import EMPTY_DEMO_WALLET, signature_at

SECRET = "o" * 32


def keyed_env(tmp_path: Any) -> dict[str, str]:
    return {
        "API_KEY_REQUIRED": "true",
        "SECRET_KEY": SECRET,
        "API_KEYS_FILE": str(tmp_path / "keys.json"),
    }


CONFIGS = ["open", "keyed", "metrics_port"]


def env_of(config: str, tmp_path: Any) -> dict[str, Any]:
    """The configurations whose documents differ: keys or not, /metrics here or not."""
    if config == "keyed":
        return keyed_env(tmp_path)
    if config == "metrics_port":
        return {"METRICS_PORT": 9464, "ALLOWED_ORIGINS": "https://app.example.com"}
    return {}


def operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(m.upper(), path) for path, item in document["paths"].items() for m in item}


@pytest.mark.parametrize("config", CONFIGS)
def test_document_is_valid_openapi_3_1(config, tmp_path):
    document = openapi_document(make_settings(**env_of(config, tmp_path)))
    assert document["openapi"].startswith("3.1.")
    openapi_spec_validator.validate(document)  # raises on any problem, $refs included


@pytest.mark.parametrize("config", CONFIGS)
def test_every_route_is_documented_and_nothing_else(config, tmp_path):
    settings = make_settings(**env_of(config, tmp_path))
    app = create_app(settings)
    routes = list(app.router.routes())
    routed = {
        (route.method, route.resource.canonical)
        for route in routes
        # HEAD is GET without a body; OPTIONS is aiohttp-cors answering preflights; `*`
        # is the catch-all answering 404 and 405, registered last.
        if route.method not in ("HEAD", "OPTIONS", "*") and route.resource is not None
    }
    assert [route.method for route in routes].index("*") == len(routes) - 1
    documented = operations(openapi_document(settings))
    assert routed == documented


def test_demo_asset_names_are_the_served_ones():
    assert set(DEMO_ASSETS) == set(demo_page.CONTENT_TYPES) - {"index.html"}
    documented = openapi_document(make_settings())["paths"]["/static/{name}"]["get"]
    media_types = set(documented["responses"]["200"]["content"])
    served = {demo_page.CONTENT_TYPES[name].split(";")[0] for name in DEMO_ASSETS}
    assert media_types == served


def test_metrics_is_documented_only_where_it_is_served(tmp_path):
    assert "/metrics" in openapi_document(make_settings())["paths"]
    assert "/metrics" not in openapi_document(make_settings(METRICS_PORT=9464))["paths"]


def test_error_code_enum_is_the_catalogue():
    schemas = openapi_document(make_settings())["components"]["schemas"]
    assert schemas["ErrorCode"]["enum"] == list(ERROR_CODES)


def test_each_http_error_response_lists_the_codes_of_its_status():
    responses = openapi_document(make_settings())["components"]["responses"]
    for response in responses.values():
        schema = response["content"]["application/json"]["schema"]
        codes = schema["allOf"][1]["properties"]["code"]["enum"]
        assert tuple(codes) in HTTP_ERRORS.values()
        assert f"Codes: {', '.join(codes)}." in response["description"]
    assert responses["BadRequest"]["content"]["application/json"]["schema"]["allOf"][1][
        "properties"
    ]["code"]["enum"] == ["INVALID_WALLET", "INVALID_EVENT_ID", "INVALID_PARAMETER"]


def test_event_schemas_are_generated_from_the_event_types():
    schemas = openapi_document(make_settings())["components"]["schemas"]
    builder = SchemaBuilder()
    for payload in events.EVENT_TYPES.values():
        builder.schema(payload)
    for name, schema in builder.components.items():
        assert schemas[name] == schema, name
    complete = schemas["CompleteEvent"]
    assert set(complete["required"]) == set(events.CompleteEvent.__annotations__)
    error = schemas["ErrorEvent"]
    assert "last_event_id" not in error["required"] and "stream_id" in error["required"]
    stream_event = schemas["StreamEvent"]
    assert stream_event["properties"]["event"]["enum"] == list(events.EVENT_TYPES)


async def test_live_events_are_exactly_their_generated_schemas(serve):
    """Every key the server sends is declared, every required one is sent, and each
    event's data validates against its generated component."""
    client = await serve(SSE_BATCH_SIZE=40)
    schemas = openapi_document(client.server.app[SETTINGS])["components"]["schemas"]
    sent = []
    for wallet in (WALLET, EMPTY_DEMO_WALLET):  # the second ends in an `error` event
        resp = await client.get(f"/v4/wallet/{wallet}/stream")
        sent += parse(await resp.read()).events
    assert {event.name for event in sent} >= {"connected", "trades", "complete", "error"}
    for event in sent:
        name = events.EVENT_TYPES[event.name].__name__
        schema = schemas[name]
        assert set(schema["required"]) <= set(event.data) <= set(schema["properties"]), name
        validator = jsonschema.Draft202012Validator(
            {"$ref": f"#/components/schemas/{name}", "components": {"schemas": schemas}}
        )
        validator.validate(event.data)


def test_generator_maps_optional_keys_nullable_literals_and_refuses_unknown_types():
    builder = SchemaBuilder()
    trade = builder.schema(events.Trade)
    assert trade == {"$ref": "#/components/schemas/Trade"}
    symbol = builder.components["TokenAmount"]["properties"]["symbol"]
    assert symbol["enum"] == ["SOL", "USDC", "USDT", None]
    slot = builder.components["Trade"]["properties"]["slot"]
    assert slot == {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}]}
    assert builder.components["Address"]["pattern"] == ADDRESS_PATTERN
    with pytest.raises(TypeError):
        builder.schema(dict[str, int])


def test_scoped_operations_need_a_key_only_when_keys_are_required(tmp_path):
    open_doc = openapi_document(make_settings())
    keyed_doc = openapi_document(make_settings(**keyed_env(tmp_path)))
    for path in ("/v4/wallet/{address}/stream", "/metrics"):
        assert "security" not in open_doc["paths"][path]["get"]
        assert "401" not in open_doc["paths"][path]["get"]["responses"]
        assert len(keyed_doc["paths"][path]["get"]["security"]) == 3
        assert "401" in keyed_doc["paths"][path]["get"]["responses"]
    for path in ("/health", "/ready", "/openapi.json"):
        assert "security" not in keyed_doc["paths"][path]["get"]


def test_limit_bound_follows_max_wallet_trades():
    stream = openapi_document(make_settings(MAX_WALLET_TRADES=500))["paths"][
        "/v4/wallet/{address}/stream"
    ]["get"]
    (limit,) = [p for p in stream["parameters"] if p.get("name") == "limit"]
    assert limit["schema"]["maximum"] == 500


async def test_openapi_json_serves_the_document_without_a_key(serve, tmp_path):
    client = await serve(**keyed_env(tmp_path))
    resp = await client.get("/openapi.json")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    assert await resp.json() == openapi_document(client.server.app[SETTINGS])
    assert "RateLimit-Remaining" not in resp.headers  # public: neither keyed nor counted


# --- schemathesis against the live server ------------------------------------------

EXAMPLES = 30
STREAM = "/v4/wallet/{address}/stream"
# Demo wallets: a 111-transaction history, and one without any (WALLET_NOT_FOUND).
KNOWN_WALLETS = (WALLET, EMPTY_DEMO_WALLET)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,  # JSON bodies, and each SSE event of a stream
    response_headers_conformance,
    ignored_auth,  # acts only where security is declared: keys required
]
_ADDRESS = re.compile(ADDRESS_PATTERN)
# How a request authenticates: (headers, query parameters), passed to the transport so
# that schemathesis counts them as explicit credentials (ignored_auth probes without).
Auth = tuple[dict[str, str] | None, dict[str, str] | None]
NO_AUTH: st.SearchStrategy[Auth] = st.just((None, None))


def addresses() -> st.SearchStrategy[str]:
    """Known demo wallets, and random real addresses (each a demo history of its own)."""
    random_ones = st.binary(min_size=32, max_size=32).map(lambda b: base58.b58encode(b).decode())
    return st.one_of(st.sampled_from(KNOWN_WALLETS), random_ones)


def cursors() -> st.SearchStrategy[str]:
    """Signatures of WALLET's history: resumable there, unknown (400) anywhere else."""
    return st.integers(0, 110).map(lambda i: signature_at(WALLET, i))


def steer(case: Any, data: st.DataObject, mode: GenerationMode) -> None:
    """Point most stream cases at wallets that exist, so 200 streams are checked too.

    Schemathesis's addresses match the pattern but almost never decode to 32 bytes; some
    cases keep theirs (400 INVALID_WALLET). In negative cases only an address that was
    not the mutated part is replaced, and nothing else is touched.
    """
    address = (case.path_parameters or {}).get("address")
    if address is None or (mode is GenerationMode.NEGATIVE and not _ADDRESS.fullmatch(address)):
        return
    # 0-4: a wallet that exists, 5-6: resume WALLET, 7: keep the generated address.
    choice = data.draw(st.integers(0, 7), label="address choice")
    if choice == 7:
        return
    case.path_parameters["address"] = data.draw(addresses(), label="address")
    if mode is GenerationMode.NEGATIVE:
        return
    # Generated cursors match the pattern but hardly ever decode to 64 bytes (400): keep
    # none, or resume WALLET from one of its own trades.
    if case.headers:
        case.headers.pop("Last-Event-ID", None)
    query = {k: v for k, v in (case.query or {}).items() if k != "before"}
    if choice >= 5:
        case.path_parameters["address"] = WALLET
        query["before"] = data.draw(cursors(), label="before")
    case.query = query


def authenticate(case: Any, data: st.DataObject, auths: st.SearchStrategy[Auth]) -> Auth:
    """Replace whatever credentials schemathesis generated with one drawn from `auths`."""
    for name in ("Authorization", "X-API-Key"):
        if case.headers:
            case.headers.pop(name, None)
    if case.query:
        case.query.pop("api_key", None)
    return data.draw(auths, label="auth")


def load_schema(base_url: str) -> Any:
    """The live server's own document (schemathesis leaves out the operation serving it)."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    schema.validate()
    return schema


def fuzz(
    base_url: str,
    *,
    auths: st.SearchStrategy[Auth] = NO_AUTH,
    examples: int = EXAMPLES,
    negative: bool = True,
    checks: list[Any] = CHECKS,
) -> Counter[tuple[str, int]]:
    """`examples` positive cases per operation, and negative ones (invalid parameters)
    where an operation has parameters to break; deterministic. Returns how many
    responses each (operation, status) got, so tests can tell what was covered.

    Runs in a thread: schemathesis calls the server synchronously (requests), while the
    test's event loop serves it.
    """
    seen: Counter[tuple[str, int]] = Counter()
    schema = load_schema(base_url)
    for result in schema.get_all_operations():
        operation = result.ok()
        modes = [(GenerationMode.POSITIVE, checks)]
        if negative and (operation.query or operation.path_parameters):
            modes.append((GenerationMode.NEGATIVE, [*checks, negative_data_rejection]))
        for mode, mode_checks in modes:
            run_cases(operation, mode, base_url, auths, examples, mode_checks, seen)
    return seen


def run_cases(
    operation: Any,
    mode: GenerationMode,
    base_url: str,
    auths: st.SearchStrategy[Auth],
    examples: int,
    checks: list[Any],
    seen: Counter[tuple[str, int]],
) -> None:
    strategy = operation.as_strategy(generation_mode=mode)

    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    @hypothesis.given(data=st.data())
    def check(data: st.DataObject) -> None:
        case = data.draw(strategy, label="case")
        steer(case, data, mode)
        headers, params = authenticate(case, data, auths)
        response = case.call_and_validate(
            base_url=base_url, headers=headers, params=params, checks=checks
        )
        seen[operation.path, response.status_code] += 1

    check()


PATH_VALUES = {"address": WALLET, "name": DEMO_ASSETS[0]}


def oversized(base_url: str, auth: dict[str, str] | None = None) -> None:
    """Requests over the SPEC §5 limits get the documented 414 and 431 on every route."""
    schema = load_schema(base_url)
    for result in schema.get_all_operations():
        operation = result.ok()
        path = {p.name: PATH_VALUES[p.name] for p in operation.path_parameters} or None
        too_long = operation.Case(path_parameters=path, query={"pad": "a" * 9000})
        response = too_long.call_and_validate(base_url=base_url, headers=auth, checks=CHECKS)
        assert response.status_code == 414
        too_big = operation.Case(path_parameters=path, headers={"X-Pad": "a" * 9000})
        response = too_big.call_and_validate(base_url=base_url, headers=auth, checks=CHECKS)
        assert response.status_code == 431


def base_url_of(client: Any) -> str:
    return str(client.make_url("")).rstrip("/")


async def test_server_conforms_to_its_document_when_keys_are_not_required(serve):
    client = await serve()
    seen = await asyncio.to_thread(fuzz, base_url_of(client))
    assert seen[STREAM, 200] and seen[STREAM, 400] and seen["/metrics", 200]
    await asyncio.to_thread(oversized, base_url_of(client))


async def test_server_conforms_to_its_document_when_keys_are_required(serve, tmp_path):
    client = await serve(**keyed_env(tmp_path))
    store = client.server.app[KEYSTORE]
    key, _ = await store.create("all", ["stream", "metrics"], None)
    stream_only, _ = await store.create("stream", ["stream"], None)  # 403 on /metrics
    auths = st.sampled_from(
        [
            ({"Authorization": f"Bearer {key}"}, None),
            ({"X-API-Key": key}, None),
            (None, {"api_key": key}),
            ({"Authorization": f"Bearer {stream_only}"}, None),
            (None, None),  # AUTH_REQUIRED
            ({"X-API-Key": "wd_" + "x" * 32}, None),  # INVALID_API_KEY
            ({"Authorization": f"Basic {key}"}, None),  # INVALID_API_KEY: not a bearer
        ]
    )
    seen = await asyncio.to_thread(fuzz, base_url_of(client), auths=auths)
    assert seen[STREAM, 200] and seen[STREAM, 401] and seen["/metrics", 403]
    await asyncio.to_thread(oversized, base_url_of(client), {"Authorization": f"Bearer {key}"})


async def test_rate_limit_refusals_conform_to_the_document(serve):
    client = await serve(RATE_LIMIT_REQUESTS=3)  # per client address without keys
    seen = await asyncio.to_thread(fuzz, base_url_of(client), examples=8, negative=False)
    assert seen[STREAM, 429] and seen["/metrics", 429]


def call_stream(base_url: str) -> int:
    """One stream request of WALLET, checked against the document; its status."""
    operation = load_schema(base_url)[STREAM]["GET"]
    case = operation.Case(path_parameters={"address": WALLET})
    return case.call_and_validate(base_url=base_url, checks=CHECKS).status_code


async def test_stream_cap_refusal_conforms_to_the_document(serve):
    # A slow source holds the first stream open while the second is refused.
    client = await serve(RATE_LIMIT_STREAMING_CONNECTIONS=1, DEMO_LATENCY_MS=5000)
    held = await client.get(f"/v4/wallet/{WALLET}/stream")
    await held.content.readline()
    assert await asyncio.to_thread(call_stream, base_url_of(client)) == 429  # TOO_MANY_STREAMS
    held.close()


async def test_draining_server_conforms_to_the_document(serve):
    client = await serve()
    client.server.app[LIFECYCLE].phase = Phase.DRAINING  # /ready and new streams: 503
    conform = [check for check in CHECKS if check is not not_a_server_error]
    seen = await asyncio.to_thread(
        fuzz, base_url_of(client), examples=8, negative=False, checks=conform
    )
    assert seen[STREAM, 503] and seen["/ready", 503]
