"""Standard Webhooks signing (SPEC §7): the v1 signature of an alert webhook.

A pure function; the key is ALERT_WEBHOOK_SECRET's (Settings.alert_webhook_key).
"""

from __future__ import annotations

import base64
import hashlib
import hmac


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: `v1,` + base64(HMAC-SHA256 of `id.timestamp.body`)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()
