"""The Solana wire transaction (legacy and v0 messages), read just far enough for the
RPC reader: signatures, static account keys and each instruction's program index.

For providers that return `base64`/`base58` transactions. Lengths are compact-u16;
anything truncated, over-long or with trailing bytes is a MessageError.
"""

from __future__ import annotations

from dataclasses import dataclass

import base58


class MessageError(ValueError):
    """The bytes are not a legacy or v0 Solana transaction."""


@dataclass(frozen=True, slots=True)
class DecodedTransaction:
    """What walletd needs from a wire transaction: signatures, static keys, programs."""

    signatures: list[str]
    version: int | None  # None: legacy
    account_keys: list[str]  # the static keys; v0 lookup-table keys are not in the message
    program_indexes: list[int]  # each compiled instruction's program id index


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, count: int) -> bytes:
        if count < 0 or self.at + count > len(self.data):
            raise MessageError("truncated transaction")
        chunk = self.data[self.at : self.at + count]
        self.at += count
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def compact_u16(self) -> int:
        """Solana's short vector length: 7 bits a byte, little end first, at most 3 bytes."""
        value = 0
        for shift in (0, 7, 14):
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if value > 0xFFFF or (shift and byte == 0):  # overflow or a padded encoding
                    raise MessageError("bad compact-u16")
                return value
        raise MessageError("compact-u16 longer than 3 bytes")


def decode_transaction(data: bytes) -> DecodedTransaction:
    """Decode a wire transaction (signatures, then a legacy or v0 message).

    Raises MessageError on anything that is not one. Instruction accounts and data are
    skipped, and address-table lookups are not resolved (the RPC meta carries them).
    """
    reader = _Reader(data)
    signatures = [base58.b58encode(reader.take(64)).decode() for _ in range(reader.compact_u16())]
    version: int | None = None
    if reader.data[reader.at : reader.at + 1] and reader.data[reader.at] & 0x80:
        version = reader.byte() & 0x7F
        if version != 0:
            raise MessageError(f"unsupported message version {version}")
    reader.take(3)  # header: required signatures, read-only signed, read-only unsigned
    keys = [base58.b58encode(reader.take(32)).decode() for _ in range(reader.compact_u16())]
    reader.take(32)  # recent blockhash
    programs = []
    for _ in range(reader.compact_u16()):
        index = reader.byte()
        reader.take(reader.compact_u16())  # account indexes
        reader.take(reader.compact_u16())  # data
        programs.append(index)
    if version is not None:
        for _ in range(reader.compact_u16()):  # address-table lookups
            reader.take(32)
            reader.take(reader.compact_u16())
            reader.take(reader.compact_u16())
    if reader.at != len(data):
        raise MessageError("trailing bytes after the message")
    return DecodedTransaction(signatures, version, keys, programs)


# --- the reader -------------------------------------------------------------------------
