"""Datasets, the registry that loads them, and their division among nodes.

A loader in :data:`DATASETS` returns a :class:`DataSource` (a training set and, where the
files provide one, a test set). :func:`prepare_federated_data` turns a source into what
an experiment needs: a partition of the training data per data-holding node, each split
into local training and local validation data (validators and receipts test on local
data), plus one global held-out test set for measurement.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from fedledger.errors import ConfigError, DataError
from fedledger.learning import idx
from fedledger.learning.partition import Partitioner, make_partitioner, partition
from fedledger.registry import NoParams, Registry


@dataclass(frozen=True, eq=False)
class Dataset:
    """Samples of one set: x float32 (N, C, H, W) in [0, 1], y int64 (N,) in [0, classes)."""

    name: str
    x: np.ndarray
    y: np.ndarray
    num_classes: int

    def __post_init__(self) -> None:
        if self.x.dtype != np.float32 or self.x.ndim != 4:
            raise DataError(
                f"dataset {self.name!r}: x must be float32 (N, C, H, W), "
                f"got {self.x.dtype} {self.x.shape}"
            )
        if self.y.dtype != np.int64 or self.y.shape != (self.x.shape[0],):
            raise DataError(
                f"dataset {self.name!r}: y must be int64 of shape ({self.x.shape[0]},), "
                f"got {self.y.dtype} {self.y.shape}"
            )
        if len(self.y) and not 0 <= int(self.y.min()) <= int(self.y.max()) < self.num_classes:
            raise DataError(
                f"dataset {self.name!r}: labels span {int(self.y.min())}..{int(self.y.max())}, "
                f"allowed 0..{self.num_classes - 1}"
            )

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        _, c, h, w = self.x.shape
        return (int(c), int(h), int(w))

    def subset(self, indices: np.ndarray, name: str | None = None) -> Dataset:
        """A new dataset holding the samples at ``indices`` (copied, contiguous)."""
        return Dataset(name or self.name, self.x[indices], self.y[indices], self.num_classes)

    def class_counts(self) -> np.ndarray:
        """Number of samples of each class, shape (num_classes,)."""
        return np.bincount(self.y, minlength=self.num_classes)


@dataclass(frozen=True, eq=False)
class DataSource:
    """What a loader returns: training data and, where the files have one, a test set."""

    train: Dataset
    test: Dataset | None = None


@dataclass(frozen=True, eq=False)
class NodeData:
    """One data-holding node's local data."""

    train: Dataset
    val: Dataset


@dataclass(frozen=True, eq=False)
class FederatedData:
    """Per-node local data (in node order) plus the global held-out test set."""

    nodes: tuple[NodeData, ...]
    test: Dataset

    @property
    def num_nodes(self) -> int:
        return len(self.nodes)

    @property
    def num_classes(self) -> int:
        return self.test.num_classes

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.test.input_shape

    def class_counts(self) -> np.ndarray:
        """Training samples per node and class, shape (num_nodes, num_classes)."""
        return np.stack([node.train.class_counts() for node in self.nodes])


DATASETS: Registry[DataSource] = Registry("dataset")


# ---------------------------------------------------------------- loaders


@DATASETS.register("digits", NoParams)
def load_digits_source() -> DataSource:
    """scikit-learn's 1,797 8x8 handwritten digits (ships with scikit-learn; no test set)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (np.asarray(bunch.images, dtype=np.float32) / np.float32(16.0))[:, None]
    y = np.asarray(bunch.target, dtype=np.int64)
    return DataSource(Dataset("digits", np.ascontiguousarray(x), y, 10))


class IdxParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(description="directory holding the IDX files")


_TRAIN_NAMES = ("train-images-idx3-ubyte", "train-images.idx3-ubyte")
_TRAIN_LABEL_NAMES = ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte")
_TEST_NAMES = ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte")
_TEST_LABEL_NAMES = ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte")
_SINGLE_NAMES = ("images-idx3-ubyte",)
_SINGLE_LABEL_NAMES = ("labels-idx1-ubyte",)


def _find(directory: Path, stems: tuple[str, ...]) -> Path | None:
    for stem in stems:
        for name in (stem, stem + ".gz"):
            if (directory / name).is_file():
                return directory / name
    return None


def _find_pair(
    directory: Path, images: tuple[str, ...], labels: tuple[str, ...], what: str
) -> tuple[Path, Path] | None:
    """(images, labels) paths of one set, None if neither exists, error if only one does."""
    found_images, found_labels = _find(directory, images), _find(directory, labels)
    if (found_images is None) != (found_labels is None):
        missing = labels[0] if found_labels is None else images[0]
        raise DataError(f"{directory}: found half of the {what} set; {missing}[.gz] is missing")
    if found_images is None or found_labels is None:
        return None
    return found_images, found_labels


def _idx_dataset(name: str, images_path: Path, labels_path: Path, num_classes: int) -> Dataset:
    images, labels = idx.read_pair(images_path, labels_path)
    x = images.astype(np.float32)[:, None]
    x /= np.float32(255.0)
    return Dataset(name, x, labels.astype(np.int64), num_classes)


@DATASETS.register("idx", IdxParams)
def load_idx_source(path: str) -> DataSource:
    """MNIST-style IDX files in a directory: a train/t10k pair, or one images/labels set.

    Standard names (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
    t10k-labels-idx1-ubyte, each optionally .gz, also with '.idx' instead of '-idx') give a
    training and a test set; a directory holding only images-idx3-ubyte[.gz] and
    labels-idx1-ubyte[.gz] (such as shared/data/mnist-10k) gives a single set, which
    :func:`prepare_federated_data` splits.
    """
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise DataError(f"{directory}: IDX dataset directory not found")
    train = _find_pair(directory, _TRAIN_NAMES, _TRAIN_LABEL_NAMES, "training")
    test = _find_pair(directory, _TEST_NAMES, _TEST_LABEL_NAMES, "test")
    if train is None:
        train = _find_pair(directory, _SINGLE_NAMES, _SINGLE_LABEL_NAMES, "single")
        if train is None:
            raise DataError(
                f"{directory}: no IDX data set found; expected train-images-idx3-ubyte[.gz] "
                "with train-labels-idx1-ubyte[.gz] (optionally t10k-* for a test set), or "
                "images-idx3-ubyte[.gz] with labels-idx1-ubyte[.gz]"
            )
        if test is not None:
            raise DataError(
                f"{directory}: a t10k test set needs the train-* files beside it, "
                f"found {train[0].name} instead"
            )
    label_sets = [idx.read_labels(train[1])]
    if test is not None:
        label_sets.append(idx.read_labels(test[1]))
    num_classes = max((int(s.max()) for s in label_sets if len(s)), default=0) + 1
    name = directory.name
    return DataSource(
        _idx_dataset(name, *train, num_classes),
        None if test is None else _idx_dataset(f"{name}-test", *test, num_classes),
    )


# ---------------------------------------------------------------- splits


def stratified_split(
    labels: np.ndarray, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(kept, taken) sorted index arrays; ``taken`` holds ``count`` samples drawn per class.

    Each class gives its share of ``count`` (largest remainders break the rounding), its
    members chosen at random.
    """
    n = len(labels)
    if not 0 <= count <= n:
        raise ValueError(f"cannot take {count} of {n} samples")
    classes, inverse, sizes = np.unique(labels, return_inverse=True, return_counts=True)
    exact = sizes * (count / n) if n else sizes.astype(float)
    quota = np.floor(exact).astype(np.int64)
    short = count - int(quota.sum())
    if short:
        quota[np.argsort(-(exact - quota), kind="stable")[:short]] += 1
    taken = [rng.permutation(np.flatnonzero(inverse == c))[: quota[c]] for c in range(len(classes))]
    mask = np.zeros(n, dtype=bool)
    if taken:
        mask[np.concatenate(taken)] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def _check_fraction(name: str, value: float, low_open: bool) -> None:
    ok = (0 < value < 1) if low_open else (0 <= value < 1)
    if not ok:
        allowed = "0 < value < 1" if low_open else "0 <= value < 1"
        raise ConfigError(name, f"must satisfy {allowed}, got {value}")


def prepare_federated_data(
    source: DataSource,
    num_nodes: int,
    partitioner: Partitioner | str,
    *,
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> FederatedData:
    """Divide ``source`` among ``num_nodes`` data-holding nodes.

    test: the source's test set, or, when it has none, a stratified seeded
        ``test_fraction`` of its training set (test_fraction is unused otherwise).
    partitioner: a ``(labels, num_nodes, rng)`` callable (see
        :func:`fedledger.learning.partition.make_partitioner`) or a registered name with
        default parameters; it divides the remaining training samples.
    val_fraction: each node's partition is split (stratified, seeded) into local train
        and local validation; with val_fraction > 0 a node keeps at least one sample on
        each side, so each partition needs two samples. 0 gives empty validation sets.
    """
    _check_fraction("test_fraction", test_fraction, low_open=True)
    _check_fraction("val_fraction", val_fraction, low_open=False)
    if num_nodes < 1:
        raise ConfigError("num_nodes", f"must be at least 1, got {num_nodes}")
    fn = make_partitioner(partitioner) if isinstance(partitioner, str) else partitioner
    test_seq, part_seq, val_seq = np.random.SeedSequence(seed).spawn(3)
    pool = source.train
    test = source.test
    if test is None:
        count = round(test_fraction * len(pool))
        if not 0 < count < len(pool):
            raise ConfigError(
                "test_fraction",
                f"{test_fraction} of {len(pool)} samples leaves an empty train or test set",
            )
        keep, held_out = stratified_split(pool.y, count, np.random.default_rng(test_seq))
        test = pool.subset(held_out, f"{pool.name}-test")
        pool = pool.subset(keep)
    parts = partition(pool.y, num_nodes, fn, np.random.default_rng(part_seq))
    nodes = []
    for node, (indices, node_seq) in enumerate(zip(parts, val_seq.spawn(num_nodes), strict=True)):
        local = pool.subset(indices, f"{pool.name}-node{node}")
        n_val = 0
        if val_fraction > 0:
            if len(local) < 2:
                raise ConfigError(
                    "val_fraction",
                    f"node {node} holds {len(local)} sample(s); a validation split needs "
                    "at least 2 (use fewer nodes, another partition, or val_fraction 0)",
                )
            n_val = min(max(1, round(val_fraction * len(local))), len(local) - 1)
        keep, val = stratified_split(local.y, n_val, np.random.default_rng(node_seq))
        nodes.append(NodeData(local.subset(keep), local.subset(val, f"{local.name}-val")))
    return FederatedData(tuple(nodes), test)
