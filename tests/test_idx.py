"""IDX reader: good files (raw and gzip) and every kind of bad file."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from fedledger.errors import DataError
from fedledger.learning import idx


def write_idx(
    path: Path, magic: int, shape: tuple[int, ...], body: bytes, gz: bool = False
) -> Path:
    data = struct.pack(f">I{len(shape)}I", magic, *shape) + body
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def images_bytes(n: int, rows: int = 3, cols: int = 2) -> bytes:
    return bytes(range(n * rows * cols))


@pytest.mark.parametrize("gz", [False, True])
def test_reads_images_and_labels(tmp_path: Path, gz: bool) -> None:
    img = write_idx(tmp_path / "i", idx.IMAGES_MAGIC, (4, 3, 2), images_bytes(4), gz)
    lab = write_idx(tmp_path / "l", idx.LABELS_MAGIC, (4,), bytes([3, 1, 4, 1]), gz)
    images, labels = idx.read_pair(img, lab)
    assert images.shape == (4, 3, 2) and images.dtype == np.uint8
    assert images[1, 0, 0] == 6 and images[3, 2, 1] == 23
    assert labels.tolist() == [3, 1, 4, 1]


def test_missing_file_names_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found") as err:
        idx.read_images(tmp_path / "nope.gz")
    assert "nope.gz" in str(err.value)


def test_bad_magic(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "i", idx.LABELS_MAGIC, (4, 3, 2), images_bytes(4))
    with pytest.raises(DataError, match="bad IDX magic number 2049; expected 2051"):
        idx.read_images(path)


def test_truncated_body(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "i", idx.IMAGES_MAGIC, (4, 3, 2), images_bytes(4)[:-5], gz=True)
    with pytest.raises(DataError, match=r"4 x 3 x 2 = 24 bytes .* holds 19 \(truncated\)"):
        idx.read_images(path)


def test_trailing_bytes(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "l", idx.LABELS_MAGIC, (2,), b"\x01\x02\x03")
    with pytest.raises(DataError, match="trailing bytes"):
        idx.read_labels(path)


def test_short_header(tmp_path: Path) -> None:
    path = tmp_path / "i"
    path.write_bytes(b"\x00\x00\x08")
    with pytest.raises(DataError, match="too short for an IDX header"):
        idx.read_images(path)


def test_corrupt_gzip(tmp_path: Path) -> None:
    path = tmp_path / "i.gz"
    path.write_bytes(gzip.compress(b"x" * 100)[:-10])
    with pytest.raises(DataError, match="corrupt gzip"):
        idx.read_images(path)


def test_count_mismatch(tmp_path: Path) -> None:
    img = write_idx(tmp_path / "i", idx.IMAGES_MAGIC, (4, 3, 2), images_bytes(4))
    lab = write_idx(tmp_path / "l", idx.LABELS_MAGIC, (3,), bytes([0, 1, 2]))
    with pytest.raises(DataError, match=r"4 images but .* 3 labels"):
        idx.read_pair(img, lab)
