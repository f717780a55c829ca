"""Resume: a stream cut after any batch and resumed from that id loses and repeats nothing."""

from __future__ import annotations

import pytest

from tests.sse_client import parse
from tests.support import WALLET

STREAM = f"/v4/wallet/{WALLET}/stream"


async def test_resume_after_every_cut_point_gives_the_uninterrupted_stream(serve):
    client = await serve(SSE_BATCH_SIZE=7)
    whole = parse(await (await client.get(STREAM)).read())
    batches = whole.named("trades")
    assert len(batches) > 5
    for cut, batch in enumerate(batches):
        # Alternate the two ways of resuming: a browser's header, a script's query.
        if cut % 2:
            resp = await client.get(STREAM, headers={"Last-Event-ID": batch.id})
        else:
            resp = await client.get(STREAM, params={"before": batch.id})
        rest = parse(await resp.read())
        assert rest.events[0].data["resumed_from"] == batch.id
        received = [t for b in batches[: cut + 1] for t in b.data["trades"]]
        assert received + rest.trades == whole.trades, f"cut after batch {cut + 1}"
        # Counts restart per connection (SPEC §1).
        if rest.named("trades"):
            assert rest.named("trades")[0].data["batch"] == 1
        assert rest.events[-1].data["trades_found"] == len(rest.trades)


async def test_resume_from_the_last_id_completes_empty(serve):
    client = await serve()
    whole = parse(await (await client.get(STREAM)).read())
    rest = parse(
        await (await client.get(STREAM, params={"before": whole.named("trades")[-1].id})).read()
    )
    assert rest.trades == []
    assert rest.events[-1].name == "complete"


async def test_last_event_id_wins_over_before(serve):
    client = await serve(SSE_BATCH_SIZE=5)
    whole = parse(await (await client.get(STREAM)).read())
    first, third = whole.named("trades")[0].id, whole.named("trades")[2].id
    resp = await client.get(STREAM, params={"before": first}, headers={"Last-Event-ID": third})
    rest = parse(await resp.read())
    assert rest.events[0].data["resumed_from"] == third
    assert rest.trades == whole.trades[15:]


@pytest.mark.parametrize("limit", [1, 3, 5, 8])
async def test_resume_after_limit_continues_where_it_stopped(serve, limit):
    client = await serve(SSE_BATCH_SIZE=3)
    whole = parse(await (await client.get(STREAM)).read())
    head = parse(await (await client.get(STREAM, params={"limit": str(limit)})).read())
    tail = parse(
        await (
            await client.get(STREAM, headers={"Last-Event-ID": head.named("trades")[-1].id})
        ).read()
    )
    assert head.trades + tail.trades == whole.trades


async def test_resume_with_unknown_signature_is_refused_before_the_stream(serve):
    client = await serve()
    # A real mainnet signature: well-formed, but not in this demo wallet's history. A 400
    # (not an error event) stops a browser's EventSource from retrying it forever.
    unknown = (
        "5g5rkbqii8rkHfgC8CWLDB2bBzKeoXcqmjyFbMvxUW9xXEEHnFc1QRqiG9eEcxdmLk6XgjVpJRnwYqqbWZKg3eBP"
    )
    for resp in (
        await client.get(STREAM, params={"before": unknown}),
        await client.get(STREAM, headers={"Last-Event-ID": unknown}),
    ):
        assert resp.status == 400
        assert (await resp.json())["code"] == "INVALID_EVENT_ID"
