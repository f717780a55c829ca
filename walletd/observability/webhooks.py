"""Standard Webhooks signing (SPEC §7): the key from SECRET_KEY, the v1 signature.

Pure functions, shared by the alert sender and the configuration check.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

SECRET_PREFIX = "whsec_"


def webhook_key(secret: str) -> bytes:
    """The HMAC key for a SECRET_KEY.

    A Standard Webhooks secret (`whsec_` + base64, as its libraries and dashboards issue
    them) is base64-decoded, so receivers can verify with those libraries as is; any other
    secret is used as its UTF-8 bytes (a receiver's library then needs the raw bytes).
    Raises ValueError for an empty key or a `whsec_` secret that is not base64.
    """
    if secret.startswith(SECRET_PREFIX):
        encoded = secret[len(SECRET_PREFIX) :]
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except binascii.Error:
            raise ValueError("SECRET_KEY: whsec_ secret is not valid base64") from None
    else:
        key = secret.encode()
    if not key:
        raise ValueError("SECRET_KEY: empty webhook key")
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: `v1,` + base64(HMAC-SHA256 of `id.timestamp.body`)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()
