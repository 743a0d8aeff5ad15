"""How one node process is configured (``fedledger node`` options)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from fedledger.assembly.config import ExperimentConfig, OutputConfig, to_yaml
from fedledger.crypto import KeyPair, load_keypair
from fedledger.protocols.base import NodeSetup
from fedledger.runtime.node.settings import NetSettings


@dataclass(frozen=True)
class NodeOptions:
    config: ExperimentConfig
    node_id: str
    data_dir: Path
    listen: tuple[str, int]
    peers: tuple[tuple[str, int], ...] = ()
    net: NetSettings = field(default_factory=NetSettings)
    key_file: Path | None = None
    exit_with_parent: bool = False
    max_frame: int | None = None  # None: derived from the model size
    # UNIX seconds at which the network's time is 0 (``--epoch``); None: this process's
    # own start, so its clock does not line up with its peers' (README: "Network time")
    epoch: float | None = None

    def __post_init__(self) -> None:
        if self.epoch is not None:
            check_epoch(self.epoch)


#: how far ahead of this machine's clock an ``--epoch`` may lie
MAX_EPOCH_AHEAD = 86_400.0


def check_epoch(epoch: float, now: float | None = None) -> float:
    """``epoch`` if it is a usable network epoch (finite UNIX seconds, >= 0, at most a day
    ahead of ``now``, default this machine's clock); ValueError naming it otherwise."""
    current = time.time() if now is None else now
    if not math.isfinite(epoch) or epoch < 0:
        raise ValueError(f"--epoch {epoch!r}: must be finite UNIX seconds >= 0")
    if epoch > current + MAX_EPOCH_AHEAD:
        raise ValueError(
            f"--epoch {epoch!r} is {epoch - current:.0f} s ahead of this machine's clock "
            f"({current:.0f}); allowed at most {MAX_EPOCH_AHEAD:.0f} s ahead (UNIX seconds, "
            "not milliseconds)"
        )
    return epoch


def default_max_frame(setup: NodeSetup) -> int:
    """Frame limit derived from the config: room for 8 copies of the model's weights
    plus 1 MiB, at least 4 MiB (a message carries a few vectors at most)."""
    return max(4 << 20, 8 * int(setup.initial_weights.nbytes) + (1 << 20))


def network_text(config: ExperimentConfig) -> str:
    """The config as nodes compare it in the handshake (output paths may differ)."""
    return to_yaml(config.model_copy(update={"output": OutputConfig()}))


def own_key(path: Path, derived: KeyPair, node_id: str) -> KeyPair:
    """The node's key from a PEM file; it must be the member key the network knows."""
    key = load_keypair(path)
    if key.public != derived.public:
        raise ValueError(
            f"--key {path}: its public key {key.public.to_bytes().hex()[:16]} is not the key of "
            f"{node_id!r} in this network ({derived.public.to_bytes().hex()[:16]}); members' "
            "keys come from the config seed"
        )
    return key
