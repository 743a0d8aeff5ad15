"""The reputation SDK: how a node updates its model and its local reputation table.

A rule is a small class with one method::

    class MyRule(UpdateRule):
        def update_model(self, current, own_accuracy, received, reputation):
            ...
            return new_model, new_reputation

``current`` is the node's model (float32 vector), ``own_accuracy`` its accuracy on the
node's local data, ``received`` the buffered models (:class:`ReceivedModel`: weights,
the accuracy this node measured for them, their generator's node id), ``reputation``
the node's table (generator -> score). It returns the new model and the new table.
Reputation is local: a node never shares its table. A rule object lives as long as its
node and may keep its own state (e.g. models seen before).

Rules are named in the config, ``update_rule: {name: <name>, <param>: <value>}``, where
name is a registered rule (:data:`UPDATE_RULES`) or an import path
``"package.module:Class"`` whose class is built with the remaining keys.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedledger.errors import ConfigError
from fedledger.registry import Registry

Vector = np.ndarray


@dataclass(frozen=True)
class ReceivedModel:
    """A model from the buffer: its weights, its accuracy on this node's local data, and
    the node id of its generator (the transaction's signer)."""

    weights: Vector
    accuracy: float
    generator: str


class UpdateRule:
    """Base class of update rules; subclasses implement :meth:`update_model`."""

    def update_model(
        self,
        current: Vector,
        own_accuracy: float,
        received: Sequence[ReceivedModel],
        reputation: Mapping[str, float],
    ) -> tuple[Vector, dict[str, float]]:
        raise NotImplementedError(f"{type(self).__name__} must implement update_model")


UPDATE_RULES: Registry[UpdateRule] = Registry("update rule")


def _imported(name: str, where: str) -> type:
    """The class an import path ``package.module:Class`` names, or ConfigError."""
    if ":" not in name:
        allowed = ", ".join(UPDATE_RULES.names())
        raise ConfigError(
            f"{where}.name",
            f"unknown rule {name!r}; registered rules: {allowed}, or 'package.module:Class'",
        )
    module_name, _, class_name = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"{where}.name", f"cannot import {module_name!r}: {err}") from None
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type) or not callable(getattr(cls, "update_model", None)):
        raise ConfigError(f"{where}.name", f"{name!r} is not a class with an update_model method")
    return cls


def check_rule(spec: Mapping[str, Any], where: str = "protocol.update_rule") -> None:
    """Validate ``{name: ..., **params}`` without building the rule: a registered name
    with valid parameters, or an importable ``package.module:Class`` with update_model."""
    values = dict(spec)
    name = values.pop("name", None)
    if not isinstance(name, str) or not name:
        raise ConfigError(
            f"{where}.name",
            f"a rule needs a 'name' (a registered rule or 'package.module:Class'), got {name!r}",
        )
    if name in UPDATE_RULES:
        UPDATE_RULES.params(name, values, where)
    else:
        _imported(name, where)


def build_rule(spec: Mapping[str, Any], where: str = "protocol.update_rule") -> UpdateRule:
    """A rule from ``{name: ..., **params}``: registered, or ``package.module:Class``."""
    values = dict(spec)
    name = values.pop("name")
    if name in UPDATE_RULES:
        return UPDATE_RULES.build(name, values, where)
    cls = _imported(name, where)
    try:
        return cls(**values)  # type: ignore[no-any-return]
    except TypeError as err:
        raise ConfigError(f"{where}", f"cannot build {name} with {values}: {err}") from None
