"""The experiment config: one YAML file, validated on load, any key overridable.

Components (dataset, partitioner, model, protocol, aggregator, attack) are written as a
mapping with ``name`` and that component's own parameters; the parameters are checked
against the component's registered parameter model, so a bad key or value is an error
naming ``section.key``, the value and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fedledger.errors import ConfigError
from fedledger.registry import format_validation_error


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ComponentSpec(BaseModel):
    """``{name: <registered name>, <param>: <value>, ...}``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


class DataConfig(Strict):
    dataset: ComponentSpec = ComponentSpec(name="digits")
    partition: ComponentSpec = ComponentSpec(name="iid")
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)


class TrainConfig(Strict):
    epochs: int = Field(1, ge=1)
    lr: float = Field(0.05, gt=0.0)
    batch_size: int = Field(32, ge=1)
    momentum: float = Field(0.0, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    solver: ComponentSpec = Field(
        ComponentSpec(name="sgd"), description="a registered solver: sgd, sgd_momentum, dp_sgd"
    )


class MaliciousGroup(Strict):
    """Nodes running an attack: given by ``ids``, or ``count`` nodes drawn with the seed."""

    attack: ComponentSpec | None = None
    faults: tuple[str, ...] = ()
    count: int = Field(0, ge=0)
    ids: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _one_selector(self) -> MaliciousGroup:
        if bool(self.count) == bool(self.ids):
            raise ValueError("give exactly one of 'count' (>= 1) or 'ids'")
        if self.attack is None and not self.faults:
            raise ValueError("a malicious group needs an 'attack' or 'faults'")
        return self


class NodesConfig(Strict):
    count: int = Field(10, ge=1, le=100_000)
    malicious: tuple[MaliciousGroup, ...] = ()


class LinkConfig(Strict):
    a: str
    b: str
    latency: float | None = Field(None, ge=0.0)
    bandwidth: float | None = Field(None, gt=0.0)
    loss: float | None = Field(None, ge=0.0, lt=1.0)


class PartitionWindow(Strict):
    start: float = Field(ge=0.0)
    end: float = Field(gt=0.0)
    group: tuple[str, ...]


class NetworkConfig(Strict):
    latency: float = Field(0.01, ge=0.0)
    bandwidth: float = Field(12.5e6, gt=0.0, description="bytes per second")
    loss: float = Field(0.0, ge=0.0, lt=1.0)
    links: tuple[LinkConfig, ...] = ()
    partitions: tuple[PartitionWindow, ...] = ()
    encode: bool = Field(
        False, description="push every message through the canonical codec (exact sizes)"
    )


class ComputeConfig(Strict):
    mode: str = Field("modelled", pattern="^(modelled|measured)$")
    train_seconds_per_sample: float = Field(2e-4, ge=0.0)
    eval_seconds_per_sample: float = Field(2e-5, ge=0.0)
    measured_scale: float = Field(1.0, gt=0.0)
    speed_spread: float = Field(0.0, ge=0.0, lt=1.0)
    work_scale: float = Field(
        1.0, ge=0.0,
        description="times the virtual time of protocol-declared work (homomorphic "
        "encryption); 0 = such work takes no virtual time",
    )


class EvalConfig(Strict):
    every: int = Field(1, ge=1, description="evaluate reported models every k-th step")
    batch_size: int = Field(1024, ge=1)


class OutputConfig(Strict):
    dir: str = "runs"
    plots: bool = True


class ExperimentConfig(Strict):
    name: str = Field("experiment", pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = Field(0, ge=0)
    rounds: int = Field(10, ge=1)
    max_time: float | None = Field(None, gt=0.0, description="virtual seconds cap")
    data: DataConfig = DataConfig()
    model: ComponentSpec = ComponentSpec(name="mlp")
    train: TrainConfig = TrainConfig()
    protocol: ComponentSpec = ComponentSpec(name="vanilla")
    nodes: NodesConfig = NodesConfig()
    network: NetworkConfig = NetworkConfig()
    compute: ComputeConfig = ComputeConfig()
    eval: EvalConfig = EvalConfig()
    output: OutputConfig = OutputConfig()


def apply_override(tree: dict[str, Any], assignment: str) -> None:
    """Apply ``a.b.c=value`` (value parsed as YAML) to a nested dict, in place."""
    key, sep, raw = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError("", f"override {assignment!r} must look like key.path=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(key, f"value {raw!r} is not valid YAML: {exc}") from None
    node = tree
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if isinstance(child, str):  # a component given by name only
            child = node[part] = {"name": child}
        if not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise ConfigError(where, f"is {child!r}, not a section; cannot set {key}")
        node = child
    node[parts[-1]] = value


def parse_config(raw: dict[str, Any], overrides: tuple[str, ...] = ()) -> ExperimentConfig:
    tree = dict(raw)
    for assignment in overrides:
        apply_override(tree, assignment)
    try:
        config = ExperimentConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError("", format_validation_error("", err)) from None
    check_components(config)
    return config


def load_config(path: str | Path, overrides: tuple[str, ...] = ()) -> ExperimentConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError("", f"cannot read config file {path}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError("", f"{path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError("", f"{path} must hold a mapping at top level, got {type(raw).__name__}")
    return parse_config(raw, overrides)


def check_components(config: ExperimentConfig) -> None:
    """Validate every component's name and parameters against its registry."""
    from fedledger.assembly.plugins import registries

    reg = registries()
    reg["dataset"].params(config.data.dataset.name, config.data.dataset.params, "data.dataset")
    reg["partitioner"].params(
        config.data.partition.name, config.data.partition.params, "data.partition"
    )
    reg["model"].params(config.model.name, config.model.params, "model")
    reg["protocol"].params(config.protocol.name, config.protocol.params, "protocol")
    reg["solver"].params(config.train.solver.name, config.train.solver.params, "train.solver")
    aggregator = config.protocol.params.get("aggregator")
    if isinstance(aggregator, dict):
        spec = ComponentSpec.model_validate(aggregator)
        reg["aggregator"].params(spec.name, spec.params, "protocol.aggregator")
    for i, group in enumerate(config.nodes.malicious):
        if group.attack is not None:
            where = f"nodes.malicious.{i}.attack"
            reg["attack"].params(group.attack.name, group.attack.params, where)


def to_yaml(config: ExperimentConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
