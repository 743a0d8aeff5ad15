"""Model registry: shapes, parameter counts, adaptation to small inputs, errors."""

from __future__ import annotations

import pytest
import torch

from fedledger.errors import ConfigError, UnknownComponentError
from fedledger.learning.models import MODELS, build_model, count_parameters


def test_registry_names() -> None:
    assert MODELS.names() == ["cnn", "lenet5", "mlp"]


def test_cnn_has_the_papers_431080_parameters() -> None:
    model = build_model("cnn", (1, 28, 28), 10)
    assert count_parameters(model) == 431_080
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_lenet5_classic_geometry_on_28x28() -> None:
    model = build_model("lenet5", (1, 28, 28), 10)
    # 28 padded to 32 -> 28 -> 14 -> 10 -> 5: 16*5*5 = 400 features, 61,706 parameters
    assert model.classifier[0].in_features == 400
    assert count_parameters(model) == 61_706


def test_mlp_hidden_layers() -> None:
    model = build_model("mlp", (1, 8, 8), 10, {"hidden": [32, 16]})
    assert count_parameters(model) == 64 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10
    assert count_parameters(build_model("mlp", (1, 8, 8), 10)) == 64 * 64 + 64 + 64 * 10 + 10


@pytest.mark.parametrize("name", ["mlp", "lenet5", "cnn"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_forward_on_small_and_large_inputs(name: str, shape: tuple[int, int, int]) -> None:
    model = build_model(name, shape, 7)
    assert model(torch.rand(2, *shape)).shape == (2, 7)


def test_lenet5_options() -> None:
    model = build_model("lenet5", (1, 28, 28), 10, {"activation": "tanh", "pool": "avg"})
    assert any(isinstance(m, torch.nn.Tanh) for m in model.modules())
    assert any(isinstance(m, torch.nn.AvgPool2d) for m in model.modules())


def test_errors_name_the_problem() -> None:
    with pytest.raises(UnknownComponentError, match="unknown model 'resnet'"):
        build_model("resnet", (1, 8, 8), 10)
    with pytest.raises(ConfigError, match=r"model\.hidden"):
        build_model("mlp", (1, 8, 8), 10, {"hidden": "wide"})
    with pytest.raises(ConfigError, match="at least 4x4, got 3x3"):
        build_model("cnn", (1, 3, 3), 10)
    with pytest.raises(ConfigError, match="num_classes must be at least 2, got 1"):
        build_model("mlp", (1, 8, 8), 1)
    with pytest.raises(ConfigError, match="pool"):
        build_model("lenet5", (1, 8, 8), 10, {"pool": "min"})
