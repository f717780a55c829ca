"""Revoked and expired keys lose their open streams, not only their next request."""

from __future__ import annotations

import logging
import time

from aiohttp import web

from walletd.appkeys import KEYSTORE, STREAMS
from walletd.errors import InvalidApiKey, ServiceUnavailable
from walletd.stream.registry import Stoppable

log = logging.getLogger(__name__)


async def end_revoked_streams(app: web.Application) -> None:
    """End the open streams of keys revoked or expired since they started, with an
    INVALID_API_KEY event. Each distinct key is looked up once per pass; a key the store
    cannot vouch for now (an outage) keeps its streams until the next pass can tell."""
    by_key: dict[str, list[Stoppable]] = {}
    for stream in app[STREAMS]:
        if stream.key_id is not None:
            by_key.setdefault(stream.key_id, []).append(stream)
    now = time.time()
    for key_id, streams in by_key.items():
        try:
            record = await app[KEYSTORE].get(key_id)
        except ServiceUnavailable:
            continue
        if record is None or not record.usable(now):
            log.info("streams_revoked", extra={"key_id": key_id, "streams": len(streams)})
            for stream in streams:
                stream.stop(InvalidApiKey(f"key {key_id} revoked or expired"))
