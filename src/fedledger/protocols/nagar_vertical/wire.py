"""Bytes of cipher arrays and openings on the wire, and their strict parsing.

Layout: scale (u16), rank (u8), each dimension (u32), then every value big-endian in a
fixed width (``2 * nbytes(n)`` for a ciphertext, ``nbytes(n)`` for an opened value).
Parsing refuses a wrong length, more than :data:`MAX_VALUES` values, and ciphertexts
outside the units of ``Z_{n**2}``.
"""

from __future__ import annotations

import math
import struct

import gmpy2
import numpy as np
from gmpy2 import mpz

from fedledger.privacy.he.errors import HeError
from fedledger.protocols.nagar_vertical.hemat import EncArray, Opened

MAX_VALUES = 1 << 14
_HEAD = struct.Struct(">HB")


def _width(n: int) -> int:
    return (int(n).bit_length() + 7) // 8


def _pack(scale: int, shape: tuple[int, ...], values: list[int], width: int) -> bytes:
    head = _HEAD.pack(scale, len(shape)) + b"".join(struct.pack(">I", d) for d in shape)
    return head + b"".join(int(v).to_bytes(width, "big") for v in values)


def _unpack(data: bytes, width: int) -> tuple[int, tuple[int, ...], list[int]]:
    if len(data) < _HEAD.size:
        raise HeError("array bytes shorter than their header")
    scale, rank = _HEAD.unpack_from(data)
    if rank > 3:
        raise HeError(f"array of rank {rank}; allowed: at most 3")
    pos = _HEAD.size + 4 * rank
    if len(data) < pos:
        raise HeError("array header truncated")
    shape = tuple(struct.unpack_from(">I", data, _HEAD.size + 4 * i)[0] for i in range(rank))
    count = math.prod(shape)
    if count > MAX_VALUES:
        raise HeError(f"array of {count} values; allowed: at most {MAX_VALUES}")
    if len(data) != pos + count * width:
        raise HeError(f"array of {len(data)} bytes; its header says {pos + count * width}")
    values = [int.from_bytes(data[pos + i * width : pos + (i + 1) * width], "big")
              for i in range(count)]  # fmt: skip
    return scale, shape, values


def cipher_bytes(a: EncArray) -> bytes:
    return _pack(a.scale, a.shape, [int(v) for v in a.values.flat], 2 * _width(a.n))


def cipher_from(data: bytes, n: int) -> EncArray:
    scale, shape, values = _unpack(bytes(data), 2 * _width(n))
    n2 = n * n
    for i, c in enumerate(values):
        if not 0 < c < n2 or gmpy2.gcd(c, n) != 1:
            raise HeError(f"ciphertext {i} is not a unit mod n**2")
    out = np.empty(len(values), dtype=object)
    out[:] = [mpz(v) for v in values]
    return EncArray(n, scale, out.reshape(shape))


def opened_bytes(o: Opened, n: int) -> bytes:
    return _pack(o.scale, o.shape, [int(v) for v in o.values.flat], _width(n))


def opened_from(data: bytes, n: int) -> Opened:
    scale, shape, values = _unpack(bytes(data), _width(n))
    if any(v >= n for v in values):
        raise HeError("an opened value is not below n")
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return Opened(scale, out.reshape(shape))
