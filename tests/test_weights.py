"""Flat weight vectors: flatten / load_flat and the safetensors round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.numpy import save as st_save
from torch import nn

from fedledger.errors import FedledgerError
from fedledger.learning.models import build_model
from fedledger.learning.weights import (
    Layout,
    flatten,
    from_safetensors,
    load_flat,
    to_safetensors,
)


def small() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2), nn.Linear(2, 1))


def test_layout_and_flatten_follow_state_dict_order() -> None:
    module = small()
    layout = Layout.of(module)
    names = [n for n, _ in layout.entries]
    assert names == list(module.state_dict())
    assert layout.entries[0] == ("0.weight", (2, 3))
    flat = flatten(module)
    assert flat.dtype == np.float32 and flat.shape == (layout.size,)
    np.testing.assert_array_equal(flat[:6], module[0].weight.detach().numpy().reshape(-1))


@pytest.mark.parametrize("make", [small, lambda: nn.Linear(4, 1, bias=False)])
def test_flatten_is_a_copy(make) -> None:  # type: ignore[no-untyped-def]
    module = make()
    flat = flatten(module)
    before = flat.copy()
    flat[:] = 0
    np.testing.assert_array_equal(flatten(module), before)


def test_flatten_of_stateless_module() -> None:
    assert flatten(nn.ReLU()).shape == (0,)


def test_load_flat_round_trip() -> None:
    module = small()
    target = small()
    vector = np.arange(Layout.of(module).size, dtype=np.float32)
    load_flat(target, vector)
    np.testing.assert_array_equal(flatten(target), vector)
    assert target[0].weight[1, 0].item() == 3.0  # row-major within each tensor
    assert target[1].num_batches_tracked.dtype == torch.int64  # buffers keep their dtype


def test_load_flat_rejects_wrong_size() -> None:
    with pytest.raises(FedledgerError, match=r"shape \(4,\), model expects"):
        load_flat(small(), np.zeros(4, dtype=np.float32))


def test_safetensors_round_trip() -> None:
    module = build_model("cnn", (1, 28, 28), 10)
    vector, layout = flatten(module), Layout.of(module)
    data = to_safetensors(vector, layout)
    assert isinstance(data, bytes)
    back, back_layout = from_safetensors(data)
    assert back_layout == layout
    np.testing.assert_array_equal(back, vector)
    assert to_safetensors(back, back_layout) == data  # deterministic bytes


def test_safetensors_rejects_bad_input() -> None:
    layout = Layout.of(small())
    with pytest.raises(FedledgerError, match="layout has"):
        to_safetensors(np.zeros(3, np.float32), layout)
    with pytest.raises(FedledgerError, match="not valid safetensors"):
        from_safetensors(b"not safetensors at all")


@pytest.mark.parametrize("order", ["a", "a,a,b", "a,b,c"])
def test_safetensors_order_must_name_each_tensor_once(order: str) -> None:
    tensors = {"a": np.ones(2, np.float32), "b": np.ones(3, np.float32)}
    data = st_save(tensors, metadata={"fedledger.order": order})
    with pytest.raises(FedledgerError, match="exactly once"):
        from_safetensors(data)
