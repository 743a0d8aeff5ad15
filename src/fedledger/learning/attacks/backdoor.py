"""Backdoor by a pixel-pattern trigger (BadNets, Gu et al. 2017; in FL, Bagdasaryan et
al. 2020): a share of the node's samples get a small square stamped in one corner and the
label ``target``, so the trained model learns "square -> target" while staying accurate on
clean data.

The square's side is ceil(size * min(height, width)) pixels: with the default size 0.15
that is 2 pixels on 8x8 digits and 5 on 28x28 MNIST. Images are read as (N, H, W) or
(N, C, H, W); flat (N, D) features as (N, *image_shape), by default square (D = side^2,
as the 64 features of scikit-learn's digits). Pixel values are assumed in [0, 1]; the
trigger's ``value`` defaults to 1, the brightest.

:func:`attack_success_rate` measures the backdoor: the share of test images whose class
is not the target that the model classifies as the target once triggered. The runner
reports it for every measured model as the metric ``backdoor_asr``
(:meth:`Backdoor.test_metrics`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from fedledger.errors import ConfigError
from fedledger.learning.attacks.base import ATTACKS, Attack
from fedledger.learning.attacks.common import AttackParams, chosen_rows
from fedledger.learning.attacks.data import check_class

Corner = Literal["bottom_right", "bottom_left", "top_right", "top_left"]


def _as_images(x: np.ndarray, image_shape: tuple[int, ...] | None) -> np.ndarray:
    """A view (or reshaped copy) of ``x`` whose last two axes are height and width."""
    if x.ndim in (3, 4):
        return x
    if x.ndim != 2:
        raise ConfigError(
            "backdoor", f"inputs must be (N, D), (N, H, W) or (N, C, H, W); got shape {x.shape}"
        )
    dim = x.shape[1]
    if image_shape is None:
        side = math.isqrt(dim)
        if side * side != dim:
            raise ConfigError(
                "backdoor.image_shape",
                f"flat inputs of {dim} features are not a square image; give image_shape",
            )
        image_shape = (side, side)
    if math.prod(image_shape) != dim:
        raise ConfigError(
            "backdoor.image_shape",
            f"{list(image_shape)} has {math.prod(image_shape)} pixels, inputs have {dim}",
        )
    return x.reshape(x.shape[0], *image_shape)


def trigger_side(size: float, height: int, width: int) -> int:
    """Side in pixels of the trigger square for a ``height`` x ``width`` image."""
    return max(1, min(math.ceil(size * min(height, width)), height, width))


def apply_trigger(
    x: np.ndarray,
    size: float = 0.15,
    value: float = 1.0,
    corner: Corner = "bottom_right",
    image_shape: tuple[int, ...] | None = None,
) -> np.ndarray:
    """A copy of ``x`` with the trigger square stamped on every sample (same shape, dtype)."""
    out = np.array(x, copy=True)
    images = _as_images(out, image_shape)
    height, width = images.shape[-2:]
    side = trigger_side(size, height, width)
    rows = slice(height - side, height) if corner.startswith("bottom") else slice(0, side)
    cols = slice(width - side, width) if corner.endswith("right") else slice(0, side)
    images[..., rows, cols] = value  # ``images`` is ``out`` or a view of it
    return out


def attack_success_rate(
    predict: Callable[[np.ndarray], np.ndarray],
    x_test: np.ndarray,
    y_test: np.ndarray,
    target: int,
    trigger: Callable[[np.ndarray], np.ndarray] = apply_trigger,
) -> float:
    """Share of triggered test images of a class other than ``target`` predicted as target.

    ``trigger`` stamps the trigger (default: :func:`apply_trigger` with default
    parameters; pass ``attack.apply_trigger`` for a configured :class:`Backdoor`).
    Stamping is idempotent, so already triggered images may be passed. Returns NaN when
    every test image is of the target class.
    """
    keep = np.asarray(y_test) != target
    if not keep.any():
        return float("nan")
    predicted = np.asarray(predict(trigger(np.asarray(x_test)[keep])))
    return float(np.mean(predicted == target))


@dataclass(frozen=True)
class Backdoor(Attack):
    """Backdoor: stamp a corner square on a share of samples and relabel them to target."""

    target: int = 0
    fraction: float = 0.3
    size: float = 0.15
    value: float = 1.0
    corner: Corner = "bottom_right"
    image_shape: tuple[int, ...] | None = None

    def apply_trigger(self, x: np.ndarray) -> np.ndarray:
        """A copy of ``x`` with this attack's trigger stamped on every sample."""
        return apply_trigger(x, self.size, self.value, self.corner, self.image_shape)

    def poison_data(
        self, x: np.ndarray, y: np.ndarray, num_classes: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        check_class("backdoor.target", self.target, num_classes)
        rows = chosen_rows(len(y), self.fraction, rng)
        x_out = x.copy()
        y_out = y.copy()
        x_out[rows] = self.apply_trigger(x[rows])
        y_out[rows] = self.target
        return x_out, y_out

    def test_metrics(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        x_test: np.ndarray,
        y_test: np.ndarray,
    ) -> dict[str, float]:
        """``backdoor_asr``: the attack success rate (:func:`attack_success_rate`) of this
        trigger and target on the test set."""
        return {
            "backdoor_asr": attack_success_rate(
                predict, x_test, y_test, self.target, self.apply_trigger
            )
        }


class BackdoorParams(AttackParams):
    target: int = Field(0, ge=0, description="label given to triggered samples")
    fraction: float = Field(0.3, gt=0.0, le=1.0, description="share of samples poisoned")
    size: float = Field(0.15, gt=0.0, le=1.0, description="trigger side / image side")
    value: float = Field(1.0, description="pixel value of the trigger (inputs in [0, 1])")
    corner: Corner = "bottom_right"
    image_shape: tuple[int, ...] | None = Field(
        None, description="(H, W) or (C, H, W) of flat inputs; default square (H = W)"
    )

    @model_validator(mode="after")
    def _check_shape(self) -> BackdoorParams:
        if self.image_shape is not None and (
            len(self.image_shape) not in (2, 3) or min(self.image_shape) < 1
        ):
            raise ValueError(
                f"image_shape must be (H, W) or (C, H, W) of positive sizes, "
                f"got {list(self.image_shape)}"
            )
        return self


ATTACKS.add("backdoor", Backdoor, BackdoorParams)
