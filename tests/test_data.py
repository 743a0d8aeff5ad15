"""Datasets, the IDX directory loader and the federated split."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from fedledger.errors import ConfigError, DataError
from fedledger.learning.data import (
    DATASETS,
    Dataset,
    DataSource,
    prepare_federated_data,
    stratified_split,
)
from fedledger.learning.partition import make_partitioner

FASHION = Path("/usr/share/datasets/fashion-mnist")


def write_set(directory: Path, images: str, labels: str, n: int, gz: bool = True) -> None:
    rng = np.random.default_rng(n)
    pixels = rng.integers(0, 256, size=(n, 5, 5), dtype=np.uint8)
    ys = np.arange(n, dtype=np.uint8) % 3
    opener = gzip.compress if gz else bytes
    (directory / images).write_bytes(opener(struct.pack(">IIII", 2051, n, 5, 5) + pixels.tobytes()))
    (directory / labels).write_bytes(opener(struct.pack(">II", 2049, n) + ys.tobytes()))


def indexed_source(n: int = 600, classes: int = 5) -> DataSource:
    """A source whose x[i] holds i, so splits can be traced back to sample ids."""
    x = np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1)
    y = np.arange(n, dtype=np.int64) % classes
    return DataSource(Dataset("ids", x, y, classes))


def ids(ds: Dataset) -> np.ndarray:
    return ds.x.reshape(-1).astype(np.int64)


def test_digits_default_dataset() -> None:
    source = DATASETS.build("digits")
    assert source.test is None
    ds = source.train
    assert ds.x.shape == (1797, 1, 8, 8) and ds.x.dtype == np.float32
    assert ds.y.dtype == np.int64 and ds.num_classes == 10
    assert ds.x.min() == 0.0 and ds.x.max() == 1.0
    assert ds.input_shape == (1, 8, 8)


def test_dataset_validates() -> None:
    with pytest.raises(DataError, match="x must be float32"):
        Dataset("bad", np.zeros((2, 4)), np.zeros(2, np.int64), 2)
    with pytest.raises(DataError, match=r"labels span 0\.\.3, allowed 0\.\.2"):
        Dataset("bad", np.zeros((2, 1, 1, 1), np.float32), np.array([0, 3]), 3)


def test_idx_standard_names(tmp_path: Path) -> None:
    write_set(tmp_path, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 30)
    write_set(tmp_path, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 12, gz=False)
    source = DATASETS.build("idx", {"path": str(tmp_path)})
    assert source.test is not None
    assert source.train.x.shape == (30, 1, 5, 5) and len(source.test) == 12
    assert (
        source.train.num_classes == 3 and 0.0 <= source.train.x.min() < source.train.x.max() <= 1.0
    )


def test_idx_single_set(tmp_path: Path) -> None:
    write_set(tmp_path, "images-idx3-ubyte.gz", "labels-idx1-ubyte.gz", 20)
    source = DATASETS.build("idx", {"path": str(tmp_path)})
    assert source.test is None and len(source.train) == 20


def test_idx_directory_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="directory not found"):
        DATASETS.build("idx", {"path": str(tmp_path / "missing")})
    with pytest.raises(DataError, match="no IDX data set found"):
        DATASETS.build("idx", {"path": str(tmp_path)})
    write_set(tmp_path, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 5)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\[\.gz\] is missing"):
        DATASETS.build("idx", {"path": str(tmp_path)})
    with pytest.raises(ConfigError, match="path"):
        DATASETS.build("idx", {})


def test_mnist_10k(mnist10k: Path) -> None:
    source = DATASETS.build("idx", {"path": str(mnist10k)})
    assert source.test is None
    ds = source.train
    assert ds.x.shape == (10000, 1, 28, 28) and ds.num_classes == 10
    assert ds.class_counts().tolist() == [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]


@pytest.mark.skipif(not FASHION.is_dir(), reason=f"Fashion-MNIST not installed at {FASHION}")
def test_fashion_mnist() -> None:
    source = DATASETS.build("idx", {"path": str(FASHION)})
    assert source.test is not None
    assert source.train.x.shape == (60000, 1, 28, 28) and len(source.test) == 10000
    assert source.train.num_classes == 10


def test_stratified_split_proportions() -> None:
    labels = np.repeat(np.arange(4), [100, 50, 30, 20])
    keep, taken = stratified_split(labels, 40, np.random.default_rng(0))
    assert len(taken) == 40 and len(keep) == 160
    assert np.bincount(labels[taken]).tolist() == [20, 10, 6, 4]
    assert len(np.intersect1d(keep, taken)) == 0


def test_prepare_splits_everything_disjointly() -> None:
    fed = prepare_federated_data(indexed_source(), 6, "iid", test_fraction=0.25, val_fraction=0.2)
    assert fed.num_nodes == 6 and len(fed.test) == 150
    assert np.bincount(fed.test.y).tolist() == [30] * 5  # stratified
    every = [ids(fed.test)]
    for node in fed.nodes:
        assert len(node.train) == 60 and len(node.val) == 15
        every += [ids(node.train), ids(node.val)]
    flat = np.concatenate(every)
    assert sorted(flat.tolist()) == list(range(600))
    assert fed.class_counts().sum() == 360


def test_prepare_is_seeded() -> None:
    part = make_partitioner("dirichlet", {"alpha": 0.5})
    a = prepare_federated_data(indexed_source(), 4, part, seed=3)
    b = prepare_federated_data(indexed_source(), 4, part, seed=3)
    c = prepare_federated_data(indexed_source(), 4, part, seed=4)
    assert all(
        np.array_equal(ids(x.train), ids(y.train)) and np.array_equal(ids(x.val), ids(y.val))
        for x, y in zip(a.nodes, b.nodes, strict=True)
    )
    assert not np.array_equal(ids(a.nodes[0].train), ids(c.nodes[0].train))


def test_prepare_uses_source_test_set() -> None:
    source = indexed_source()
    test = Dataset("t", np.zeros((7, 1, 1, 1), np.float32), np.zeros(7, np.int64), 5)
    fed = prepare_federated_data(DataSource(source.train, test), 3, "iid", val_fraction=0.0)
    assert fed.test is test
    assert sum(len(n.train) for n in fed.nodes) == 600
    assert all(len(n.val) == 0 for n in fed.nodes)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"test_fraction": 0.0}, "test_fraction: must satisfy 0 < value < 1, got 0.0"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"val_fraction": -0.1}, "val_fraction: must satisfy 0 <= value < 1, got -0.1"),
        ({"val_fraction": 1.0}, "val_fraction"),
    ],
)
def test_prepare_rejects_bad_fractions(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        prepare_federated_data(indexed_source(), 2, "iid", **kwargs)


def test_prepare_reports_impossible_partitions() -> None:
    with pytest.raises(ConfigError, match="partition: cannot give 700 nodes"):
        prepare_federated_data(indexed_source(), 700, "iid")
    with pytest.raises(ConfigError, match="node 0 holds 1 sample"):
        prepare_federated_data(indexed_source(), 480, "iid")
    with pytest.raises(ConfigError, match="num_nodes: must be at least 1, got 0"):
        prepare_federated_data(indexed_source(), 0, "iid")
