"""Reader of the IDX files that MNIST and Fashion-MNIST ship in, raw or gzip-compressed.

An IDX file is a big-endian header (two zero bytes, a type code, the number of
dimensions, then one uint32 size per dimension) followed by the data. MNIST images are
magic 2051 (type 0x08 = uint8, 3 dimensions: count, rows, cols), labels magic 2049
(uint8, 1 dimension: count). Whether a file is compressed is told by its first two bytes,
not by its name. Every problem raises :class:`fedledger.errors.DataError` naming the file
and what was expected.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from fedledger.errors import DataError

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when it is gzip."""
    if not path.is_file():
        raise DataError(f"{path}: IDX file not found (expected a raw or .gz IDX file here)")
    raw = path.read_bytes()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt gzip data ({exc})") from None


def _parse(path: Path, data: bytes, magic: int) -> np.ndarray:
    """Check the header against ``magic`` and return the uint8 array it describes."""
    ndim = magic & 0xFF
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(
            f"{path}: file has {len(data)} bytes, too short for an IDX header of "
            f"{header_len} bytes (magic {magic})"
        )
    (found,) = struct.unpack(">I", data[:4])
    if found != magic:
        raise DataError(
            f"{path}: bad IDX magic number {found}; expected {magic} "
            f"({'images' if magic == IMAGES_MAGIC else 'labels'}, uint8, {ndim} dimensions)"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header_len])
    expected = int(np.prod(shape, dtype=np.int64))
    body = len(data) - header_len
    if body != expected:
        dims = " x ".join(str(s) for s in shape)
        raise DataError(
            f"{path}: header announces {dims} = {expected} bytes of data but the file holds "
            f"{body} ({'truncated' if body < expected else 'trailing bytes'})"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(shape)


def read_images(path: str | Path) -> np.ndarray:
    """uint8 array (N, rows, cols) from an IDX images file (magic 2051)."""
    p = Path(path)
    return _parse(p, _read_bytes(p), IMAGES_MAGIC)


def read_labels(path: str | Path) -> np.ndarray:
    """uint8 array (N,) from an IDX labels file (magic 2049)."""
    p = Path(path)
    return _parse(p, _read_bytes(p), LABELS_MAGIC)


def read_pair(images_path: str | Path, labels_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of one set; their counts must match."""
    images = read_images(images_path)
    labels = read_labels(labels_path)
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{images_path} holds {images.shape[0]} images but {labels_path} holds "
            f"{labels.shape[0]} labels; the counts must match"
        )
    return images, labels
