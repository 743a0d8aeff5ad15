"""Config loading, validation errors and command-line overrides."""

from __future__ import annotations

import pytest

from fedledger.assembly.config import apply_override, load_config, parse_config
from fedledger.errors import ConfigError


def test_quickstart_loads(repo):
    cfg = load_config(repo / "configs" / "quickstart.yaml")
    assert cfg.protocol.name == "vanilla" and cfg.nodes.count == 10


def test_every_shipped_config_validates(repo):
    for path in sorted((repo / "configs").glob("*.yaml")):
        load_config(path)


def test_overrides_set_nested_keys_and_parse_yaml_values(repo):
    cfg = load_config(
        repo / "configs" / "quickstart.yaml",
        ("rounds=5", "data.partition.name=dirichlet", "data.partition.alpha=0.1", "seed=3"),
    )
    assert cfg.rounds == 5 and cfg.seed == 3
    assert cfg.data.partition.name == "dirichlet"
    assert cfg.data.partition.params == {"alpha": 0.1}


def test_override_into_a_component_given_by_name():
    tree = {"model": "mlp"}
    apply_override(tree, "model.hidden=[32, 16]")
    assert tree == {"model": {"name": "mlp", "hidden": [32, 16]}}


@pytest.mark.parametrize(
    ("raw", "overrides", "needle"),
    [
        ({"roundz": 3}, (), "roundz: Extra inputs are not permitted"),
        ({"rounds": 0}, (), "rounds: Input should be greater than or equal to 1 (got 0)"),
        ({}, ("train.lr=-1",), "train.lr: Input should be greater than 0 (got -1)"),
        ({"model": {"name": "resnet"}}, (), "model: unknown model 'resnet'; available:"),
        ({"model": {"name": "mlp", "width": 3}}, (), "model.width: Extra inputs"),
        ({"protocol": {"name": "vanilla", "fraction": 2}}, (), "protocol.fraction"),
        ({"protocol": "vanilla"}, ("protocol.aggregator.name=mean",), "unknown aggregator"),
        (
            {"protocol": {"name": "vanilla", "aggregator": {"name": "fedavg"}}},
            ("protocol.aggregator.penalty=1",),
            "protocol.aggregator.penalty: Extra inputs",
        ),
        ({}, ("data.partition.name=dirichlet", "data.partition.alpha=-1"), "data.partition.alpha"),
        ({}, ("data.dataset.name=imagenet",), "unknown dataset 'imagenet'"),
        ({"nodes": {"malicious": [{"count": 1}]}}, (), "needs an 'attack' or 'faults'"),
        ({"nodes": {"malicious": [{"attack": "noise"}]}}, (), "exactly one of 'count'"),
        ({}, ("rounds",), "must look like key.path=value"),
        ({"rounds": 3}, ("rounds.x=1",), "rounds: is 3, not a section"),
    ],
)
def test_bad_values_name_the_key_the_value_and_what_is_allowed(raw, overrides, needle):
    with pytest.raises(ConfigError) as info:
        parse_config(raw, overrides)
    assert needle in str(info.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(bad)
