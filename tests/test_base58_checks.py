"""walletd's address and signature checks agree with the base58 library on every input:
its own decoder counts bytes without building them (trades/solana.py), so it is held to
the reference here, valid, near-miss and invalid inputs alike."""

from __future__ import annotations

import base58
from hypothesis import example, given
from hypothesis import strategies as st

from walletd.trades.solana import is_address, is_signature

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def reference_size(text: str) -> int | None:
    try:
        return len(base58.b58decode(text))
    except ValueError:
        return None


# Byte strings around the two sizes, leading zero bytes included (each is a leading "1").
near_sizes = st.integers(min_value=0, max_value=4).flatmap(
    lambda zeros: st.binary(min_size=28, max_size=68).map(lambda b: bytes(zeros) + b)
)


@given(near_sizes)
@example(b"\x01" + bytes(63))  # 256**63: the least number of 64 bytes
@example(b"\xff" * 63)  # 256**63 - 1: the greatest of 63
@example(bytes(1) + b"\x01" + bytes(62))  # a leading zero byte and 256**62
@example(bytes(2) + b"\xff" * 62)
@example(b"\x01" + bytes(31))
@example(b"\xff" * 31)
@example(b"\x01" + bytes(64))
@example(bytes(32))
@example(bytes(64))
@example(b"\xff" * 64)
@example(b"\xff" * 32)
def test_encoded_bytes_are_judged_by_their_decoded_size(raw: bytes) -> None:
    text = base58.b58encode(raw).decode()
    assert is_signature(text) is (len(raw) == 64)
    assert is_address(text) is (len(raw) == 32)


@given(st.text(alphabet=ALPHABET + "0OIl+/= é", min_size=0, max_size=100))
@example("")
@example("1" * 64)
@example("z" * 88)
@example("z" * 44)
def test_any_text_is_judged_as_the_reference_decoder_would(text: str) -> None:
    size = reference_size(text) if text else None
    assert is_signature(text) is (size == 64)
    assert is_address(text) is (size == 32)
