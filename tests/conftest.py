"""Shared test set-up: one torch thread per test process (xdist runs two)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

#: The smart-contract stack (vyper, titanoboa, eth-*), installed by `make test` (see the
#: Makefile: vyper pins cbor2<6, which the codec cannot use, so it goes in with --no-deps).
CONTRACTS_STACK = all(importlib.util.find_spec(m) for m in ("boa", "vyper", "eth_keys", "eth_abi"))
CONTRACT_TESTS = ["test_contracts_eth.py", "test_contracts_dflbcb.py"]
collect_ignore = [] if CONTRACTS_STACK else CONTRACT_TESTS


def pytest_report_header(config: pytest.Config) -> str | None:
    if CONTRACTS_STACK:
        return None
    return (
        "contracts stack (vyper, titanoboa, eth-*) not installed: skipping "
        f"{', '.join(CONTRACT_TESTS)} (run `make test` to install it)"
    )

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
