"""API keys: format, digests, record signing, open_keystore, and what the client loads."""

from __future__ import annotations

import hashlib
import hmac
import json
import string
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.keystores import HASHER, SECRET, SIGNER
from tests.support import make_settings
from walletd.auth.format import generate_key, is_well_formed, mask_key, parse_scopes
from walletd.auth.keys import (
    KeyHasher,
    KeyRecord,
    RecordRejected,
    RecordSigner,
    dump_record,
    load_record,
    open_keystore,
    record_to_dict,
)
from walletd.auth.store_file import FileKeyStore
from walletd.auth.store_redis import RedisKeyStore

# Key format, masking, hashing


def test_the_client_loads_no_redis_no_server_and_no_fcntl_user() -> None:
    """`walletd stream` runs where the server's dependencies may be missing."""
    probe = textwrap.dedent(
        """
        import ast, json, pathlib, sys
        import walletd.client.stream
        heavy = {"redis", "fcntl", "aiohttp.web"}
        users = {}
        for name in sorted(m for m in sys.modules if m.startswith("walletd")):
            tree = ast.parse(pathlib.Path(sys.modules[name].__file__).read_text())
            for node in tree.body:  # module level: what importing it loads
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names = [node.module or ""]
                else:
                    continue
                users.update({name: n for n in names if n in heavy or n.split(".")[0] in heavy})
        loaded = {m: m in sys.modules for m in ("redis", "aiohttp.web")}
        print(json.dumps({"loaded": loaded, "users": users}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == {"loaded": {"redis": False, "aiohttp.web": False}, "users": {}}


def test_generated_keys_have_the_spec_format_and_full_alphabet() -> None:
    keys = {generate_key() for _ in range(1000)}
    assert len(keys) == 1000
    assert all(k.startswith("wd_") and len(k) == 35 and is_well_formed(k) for k in keys)
    # 32,000 random characters: every one of the 62 shows up, and nothing else does.
    assert set("".join(k[3:] for k in keys)) == set(string.ascii_letters + string.digits)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "wd_",
        "wd_" + "a" * 31,
        "wd_" + "a" * 33,
        "WD_" + "a" * 32,
        "xx_" + "a" * 32,
        "wd_" + "a" * 31 + "-",
        "wd_" + "a" * 31 + "é",
        "wd_" + "a" * 32 + "\n",
        " wd_" + "a" * 32,
    ],
)
def test_is_well_formed_rejects_anything_but_wd_and_32_alphanumerics(key: str) -> None:
    assert not is_well_formed(key)


def test_mask_key_shows_at_most_ten_printable_characters() -> None:
    key = generate_key()
    assert mask_key(key) == key[:10] + "..."
    assert mask_key("") == "..."
    assert mask_key("ab\ncd") == "ab?cd..."
    assert key[10:] not in mask_key(key)


def test_digest_is_an_hmac_that_depends_on_the_secret() -> None:
    key = generate_key()
    digest = KeyHasher(SECRET).digest(key)
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert digest == KeyHasher(SECRET).digest(key)
    assert digest != KeyHasher("another secret").digest(key)
    assert key not in digest


def test_remembered_digests_stay_right_and_bounded() -> None:
    """The memo of recent digests answers what a fresh HMAC would, for every key, and
    never holds more than MEMO_SIZE keys, however many distinct keys clients send."""
    hasher, fresh = KeyHasher(SECRET), KeyHasher(SECRET)
    keys = [generate_key() for _ in range(KeyHasher.MEMO_SIZE + 10)]
    first = [hasher.digest(k) for k in keys]
    again = [hasher.digest(k) for k in reversed(keys)][::-1]
    expected = [hmac.new(SECRET.encode(), k.encode(), hashlib.sha256).hexdigest() for k in keys]
    assert first == again == expected
    assert fresh.digest(keys[0]) == expected[0]
    assert len(hasher._memo) <= KeyHasher.MEMO_SIZE


def test_hasher_refuses_an_empty_secret() -> None:
    with pytest.raises(ValueError, match="SECRET_KEY"):
        KeyHasher("")


def test_parse_scopes_accepts_lists_and_comma_strings() -> None:
    assert parse_scopes("stream, metrics") == {"stream", "metrics"}
    assert parse_scopes(["admin"]) == {"admin"}
    with pytest.raises(ValueError, match="unknown scope 'write'"):
        parse_scopes("stream,write")
    with pytest.raises(ValueError, match="no scope"):
        parse_scopes(",")


# Record signing


def a_record(**changes: Any) -> KeyRecord:
    fields: dict[str, Any] = {
        "id": "k_0123456789ab",
        "name": "n",
        "scopes": frozenset({"stream"}),
        "prefix": "wd_abcdefg",
        "digest": "0" * 64,
        "created_at": 1.0,
        "expires_at": None,
        "revoked": False,
    }
    return KeyRecord(**{**fields, **changes})


def test_the_signature_covers_every_field() -> None:
    record = a_record()
    stored = dump_record(record, SIGNER)
    assert load_record(stored, SIGNER) == record
    for name, value in [
        ("id", "k_ba9876543210"),
        ("name", "m"),
        ("scopes", ["stream", "admin"]),
        ("prefix", "wd_zzzzzzz"),
        ("digest", "1" * 64),
        ("created_at", 2.0),
        ("expires_at", 99.0),
        ("revoked", True),
        ("replaced_by", "k_ba9876543210"),
    ]:
        with pytest.raises(RecordRejected, match="signature") as rejected:
            load_record({**stored, name: value}, SIGNER)
        assert not rejected.value.unsigned and rejected.value.record is not None


def test_the_signing_key_is_derived_not_the_secret_nor_the_digest_key() -> None:
    record = a_record()
    signature = RecordSigner(SECRET).sign(record)
    assert signature != RecordSigner("another secret").sign(record)
    payload = json.dumps(record_to_dict(record), sort_keys=True, separators=(",", ":"))
    assert signature != HASHER.digest(payload)  # not HMAC under SECRET_KEY itself
    derived = hmac.new(SECRET.encode(), b"walletd key records v1", hashlib.sha256).digest()
    assert signature == hmac.new(derived, payload.encode(), hashlib.sha256).hexdigest()


def test_a_signature_made_for_another_key_is_refused() -> None:
    record = a_record()
    stored = dump_record(record, SIGNER)
    assert load_record(stored, SIGNER, digest="0" * 64) == record
    with pytest.raises(RecordRejected, match="another key"):
        load_record(stored, SIGNER, digest="1" * 64)


@pytest.mark.parametrize(
    "item",
    [
        None,
        [],
        "text",
        {"id": "k_0123456789ab"},
        {**record_to_dict(a_record()), "created_at": float("nan")},
        {**record_to_dict(a_record()), "id": "../../etc"},
        {**record_to_dict(a_record()), "scopes": ["root"]},
        {**record_to_dict(a_record()), "revoked": 0},
        {**record_to_dict(a_record()), "sig": 5},
    ],
)
def test_bad_records_are_rejected_with_a_typed_error(item: object) -> None:
    with pytest.raises(RecordRejected):
        load_record(item, SIGNER)


def test_an_unsigned_record_is_rejected_as_unsigned_with_its_fields() -> None:
    record = a_record()
    with pytest.raises(RecordRejected, match="resign") as rejected:
        load_record(record_to_dict(record), SIGNER)
    assert rejected.value.unsigned and rejected.value.record == record


# open_keystore


async def test_open_keystore_picks_the_configured_backend(tmp_path: Path, redis_url: str) -> None:
    file_store = open_keystore(make_settings(SECRET_KEY=SECRET, API_KEYS_FILE=tmp_path / "k.json"))
    assert isinstance(file_store, FileKeyStore) and file_store.path == tmp_path / "k.json"
    redis_store = open_keystore(
        make_settings(SECRET_KEY=SECRET, KEYSTORE="redis", REDIS_URL=redis_url)
    )
    try:
        assert isinstance(redis_store, RedisKeyStore)
    finally:
        await redis_store.close()


def test_open_keystore_needs_a_secret_key() -> None:
    with pytest.raises(ValueError, match="SECRET_KEY"):
        open_keystore(make_settings())
