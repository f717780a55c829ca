"""Solana identifiers: base58 addresses (32 bytes) and transaction signatures (64 bytes)."""

from __future__ import annotations

import functools
import re

WSOL_MINT = "So11111111111111111111111111111111111111112"
USDC_MINT = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
USDT_MINT = "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB"
SOL_DECIMALS = 9

_ALPHABET_TEXT = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BASE58 = re.compile("[1-9A-HJ-NP-Za-km-z]+")  # the alphabet above, every character
# base58 of n bytes is at most ceil(n * log(256) / log(58)) characters.
_MAX_LEN = {32: 44, 64: 88}


def _base58(number: int) -> str:
    digits = ""
    while number:
        number, digit = divmod(number, 58)
        digits = _ALPHABET_TEXT[digit] + digits
    return digits


# 256**k in base58, for k = 0..64: a number takes k bytes when it is at least the
# (k-1)-th and less than the k-th.
_POWERS = tuple(_base58(256**k) for k in range(65))


def _decodes_to(text: str, size: int) -> bool:
    if len(text) > _MAX_LEN[size] or _BASE58.fullmatch(text) is None:
        return False
    return _decoded_size_is(text, size)


def _decoded_size_is(text: str, size: int) -> bool:
    """Whether base58 `text` decodes to `size` bytes: one per leading "1", then the
    number's, found by comparing the digits with those of 256**k rather than by decoding:
    the alphabet is in ASCII order, so digit strings of one length compare as numbers.
    With the alphabet checked by a regular expression, twelve times faster than summing
    the digits, and the signatures of every listed page and transaction pass through
    here (SPEC §4)."""
    digits = text.lstrip("1")
    size -= len(text) - len(digits)  # the number's bytes
    if size <= 0:
        return size == 0 and not digits
    return _at_least(digits, _POWERS[size - 1]) and not _at_least(digits, _POWERS[size])


def _at_least(digits: str, power: str) -> bool:
    """Base58 digits without leading zeros ("1") against a power's: number >= power."""
    return len(digits) > len(power) or (len(digits) == len(power) and digits >= power)


def is_address(text: str) -> bool:
    """True when `text` is base58 that decodes to exactly 32 bytes (a public key)."""
    return len(text) <= _MAX_LEN[32] and _is_address(text)


@functools.lru_cache(maxsize=4096)
def _is_address(text: str) -> bool:
    """Cached: streams ask about the same wallets again and again, and decoding cost
    about 2 % of a new stream's CPU (bench/README.md). At most 4,096 strings of at most
    44 characters."""
    return _decodes_to(text, 32)


def is_signature(text: str) -> bool:
    """True when `text` is base58 that decodes to exactly 64 bytes (a transaction signature)."""
    return _decodes_to(text, 64)
