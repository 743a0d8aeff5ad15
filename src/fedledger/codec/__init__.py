"""Canonical encoding: deterministic CBOR for records and messages (see canonical.py)."""

from fedledger.codec.canonical import (
    MAX_DEPTH,
    CodecError,
    decode,
    decode_as,
    encode,
    record,
    record_name,
)

__all__ = ["MAX_DEPTH", "CodecError", "decode", "decode_as", "encode", "record", "record_name"]
