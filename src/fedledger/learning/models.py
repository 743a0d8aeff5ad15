"""Models, selected by name: a small MLP, LeNet-5, and the μDFL paper's CNN.

A factory takes ``(input_shape, num_classes, **params)`` with input_shape = (C, H, W)
and returns an ordinary ``torch.nn.Module`` mapping (N, C, H, W) float32 to (N, classes)
logits. Use :func:`build_model` to validate parameters from a config.

Small inputs (scikit-learn's 8x8 digits) cannot go through two unpadded 5x5
convolutions and two 2x2 poolings, so the convolutional models pad a 5x5 convolution by
2 ("same") when its input is too small to lose 4 pixels, and skip a pooling that would
leave less than one pixel; on 28x28 MNIST both keep their published geometry.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from fedledger.errors import ConfigError
from fedledger.registry import Registry, validate_params

InputShape = tuple[int, int, int]

MODELS: Registry[nn.Module] = Registry("model")


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_shape(model: str, input_shape: InputShape, num_classes: int, min_side: int) -> None:
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ConfigError("model", f"{model}: input_shape must be (C, H, W), got {input_shape}")
    if min(input_shape[1:]) < min_side:
        raise ConfigError(
            "model",
            f"{model}: images must be at least {min_side}x{min_side}, got "
            f"{input_shape[1]}x{input_shape[2]}",
        )
    if num_classes < 2:
        raise ConfigError("model", f"{model}: num_classes must be at least 2, got {num_classes}")


def _flat_size(features: nn.Module, input_shape: InputShape) -> int:
    """Number of features ``features`` produces for one input of ``input_shape``."""
    with torch.no_grad():
        return int(features(torch.zeros(1, *input_shape)).numel())


def _conv_block(
    in_ch: int, out_ch: int, side: int, pad_below: int, act: type[nn.Module], pool: type[nn.Module]
) -> tuple[list[nn.Module], int]:
    """5x5 conv (padded by 2 when ``side`` < ``pad_below``), activation, 2x2 pool.

    Returns the layers and the side length after them.
    """
    pad = 2 if side < pad_below else 0
    side = side + 2 * pad - 4
    layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, 5, padding=pad), act()]
    if side >= 2:
        layers.append(pool(2))
        side //= 2
    return layers, side


# ---------------------------------------------------------------- MLP


class MLPParams(_Params):
    hidden: list[int] = Field(default_factory=lambda: [64], description="hidden layer widths")


class MLP(nn.Module):
    """Fully connected network: flatten, (Linear, ReLU) per hidden width, Linear."""

    def __init__(self, input_shape: InputShape, num_classes: int, hidden: list[int]) -> None:
        super().__init__()
        if any(h < 1 for h in hidden):
            raise ConfigError("model.hidden", f"widths must be >= 1, got {hidden}")
        widths = [input_shape[0] * input_shape[1] * input_shape[2], *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in itertools.pairwise(widths):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(widths[-1], num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@MODELS.register("mlp", MLPParams)
def mlp(input_shape: InputShape, num_classes: int, hidden: list[int] | None = None) -> nn.Module:
    """Multi-layer perceptron with ReLU hidden layers (default one of 64 units)."""
    _check_shape("mlp", input_shape, num_classes, 1)
    return MLP(input_shape, num_classes, [64] if hidden is None else list(hidden))


# ---------------------------------------------------------------- LeNet-5


class LeNet5Params(_Params):
    activation: Literal["relu", "tanh"] = "relu"
    pool: Literal["max", "avg"] = "max"


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al. 1998): conv 6@5x5, pool, conv 16@5x5, pool, FC 120, 84, out.

    The original takes 32x32 inputs; smaller images get the first convolution padded by 2
    (28x28 MNIST becomes the classic 32x32 geometry: 28-14-10-5, 16*5*5 = 400 features,
    61,706 parameters with 10 classes). The second convolution is padded too when its
    input is under 10x10 (8x8 digits: 8-4-4-2, 64 features). activation/pool default to
    ReLU and max pooling; "tanh"/"avg" give the original's choice.
    """

    def __init__(
        self, input_shape: InputShape, num_classes: int, activation: str, pool: str
    ) -> None:
        super().__init__()
        act = nn.ReLU if activation == "relu" else nn.Tanh
        pool_cls = nn.MaxPool2d if pool == "max" else nn.AvgPool2d
        side = min(input_shape[1:])
        first, side = _conv_block(input_shape[0], 6, side, 32, act, pool_cls)
        second, side = _conv_block(6, 16, side, 10, act, pool_cls)
        self.features = nn.Sequential(*first, *second, nn.Flatten())
        flat = _flat_size(self.features, input_shape)
        self.classifier = nn.Sequential(
            nn.Linear(flat, 120), act(), nn.Linear(120, 84), act(), nn.Linear(84, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@MODELS.register("lenet5", LeNet5Params)
def lenet5(
    input_shape: InputShape, num_classes: int, activation: str = "relu", pool: str = "max"
) -> nn.Module:
    """LeNet-5, its first convolution padded to the classic 32x32 geometry."""
    _check_shape("lenet5", input_shape, num_classes, 4)
    return LeNet5(input_shape, num_classes, activation, pool)


# ---------------------------------------------------------------- μDFL CNN


class CNNParams(_Params):
    conv1: int = Field(20, ge=1, description="channels of the first 5x5 convolution")
    conv2: int = Field(50, ge=1, description="channels of the second 5x5 convolution")
    fc: int = Field(500, ge=1, description="width of the hidden fully connected layer")


class CNN(nn.Module):
    """The μDFL paper's CNN: conv 20@5x5, ReLU, max pool, conv 50@5x5, ReLU, max pool,
    FC 500 with ReLU, FC out. On 1x28x28 with 10 classes: 28-24-12-8-4, 800 features,
    431,080 parameters. Inputs under 12x12 get the convolutions padded (8x8: 8-4-4-2).
    """

    def __init__(
        self, input_shape: InputShape, num_classes: int, conv1: int, conv2: int, fc: int
    ) -> None:
        super().__init__()
        side = min(input_shape[1:])
        first, side = _conv_block(input_shape[0], conv1, side, 12, nn.ReLU, nn.MaxPool2d)
        second, side = _conv_block(conv1, conv2, side, 12, nn.ReLU, nn.MaxPool2d)
        self.features = nn.Sequential(*first, *second, nn.Flatten())
        flat = _flat_size(self.features, input_shape)
        self.classifier = nn.Sequential(nn.Linear(flat, fc), nn.ReLU(), nn.Linear(fc, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@MODELS.register("cnn", CNNParams)
def cnn(
    input_shape: InputShape, num_classes: int, conv1: int = 20, conv2: int = 50, fc: int = 500
) -> nn.Module:
    """μDFL CNN: two 5x5 convs (20, 50 channels), 2x2 max pools, FC 500, FC out."""
    _check_shape("cnn", input_shape, num_classes, 4)
    return CNN(input_shape, num_classes, conv1, conv2, fc)


def build_model(
    name: str,
    input_shape: InputShape,
    num_classes: int,
    params: Mapping[str, Any] | None = None,
    where: str = "model",
) -> nn.Module:
    """Validate ``params`` for model ``name`` and build it for this input and class count."""
    comp = MODELS.get(name, where)
    values = validate_params(comp.params, params or {}, where).model_dump()
    return comp.factory(tuple(input_shape), num_classes, **values)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
