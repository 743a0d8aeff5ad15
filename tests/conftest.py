"""Shared test set-up: one torch thread per test process (xdist runs two)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def mnist10k() -> Path:
    path = SHARED / "data" / "mnist-10k"
    if not (path / "images-idx3-ubyte.gz").exists():
        pytest.skip(f"MNIST-10k not present at {path}")
    return path
