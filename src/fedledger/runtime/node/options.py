"""How one node process is configured (``fedledger node`` options)."""

from __future__ import annotations

import ipaddress
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from fedledger.assembly.config import ExperimentConfig, OutputConfig, to_yaml
from fedledger.assembly.member_keys import load_extra_keys
from fedledger.assembly.services import GenesisFile, Membership, parse_convener
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
    # a file that will hold the epoch (``--epoch-file``): the node waits for it once it is
    # ready (peers connected, chains synced); exclusive with ``epoch``
    epoch_file: Path | None = None
    # the network's signed genesis file (``--genesis``, with ``--key``); None: every key is
    # derived from (seed, node id), which is allowed on loopback addresses only
    genesis_file: Path | None = None
    # the pins a genesis is checked against (at least one with ``genesis_file``): the
    # convener's public key (``--convener``: hex or its member file) and/or the genesis's
    # SHA-256 (``--genesis-sha256``, printed by ``fedledger genesis``)
    convener: str | None = None
    genesis_sha256: str | None = None

    def __post_init__(self) -> None:
        if self.genesis_file is not None and self.key_file is None:
            raise ValueError(
                f"--genesis {self.genesis_file}: give this node's private key too (--key FILE "
                "from `fedledger keygen`)"
            )
        if self.genesis_file is not None and self.convener is None and self.genesis_sha256 is None:
            raise ValueError(
                f"--genesis {self.genesis_file}: pin who may sign it: --convener KEY_OR_FILE "
                "(the convener's public key in hex, or its member file) or --genesis-sha256 HEX "
                "(printed by `fedledger genesis`), learnt from the convener out of band; "
                "otherwise anyone could hand this node a genesis they signed themselves"
            )
        if self.genesis_file is None:
            check_loopback_only(self.listen, self.peers)
        if self.epoch is not None and self.epoch_file is not None:
            raise ValueError(
                f"--epoch {self.epoch!r} and --epoch-file {self.epoch_file}: give one of them, "
                "not both (a fixed epoch, or a file the launcher writes once every node is "
                "ready)"
            )
        if self.epoch is not None:
            check_epoch(self.epoch)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and addresses in 127.0.0.0/8 or ::1."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_loopback_only(listen: tuple[str, int], peers: tuple[tuple[str, int], ...]) -> None:
    """Refuse derived keys off loopback: anyone with the config can derive them."""
    outside = [f"{h}:{p}" for h, p in (listen, *peers) if not is_loopback(h)]
    if outside:
        raise ValueError(
            f"{', '.join(outside)} is not a loopback address, and without --genesis this "
            "node's key and every member's are derived from the config's seed, so anyone "
            "holding the config could join as any member. On several machines, create a key "
            "per node (`fedledger keygen`), a signed genesis from their public keys "
            "(`fedledger genesis`) and start each node with --key and --genesis"
        )


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


def read_epoch_file(path: Path, now: float | None = None) -> float | None:
    """The epoch in ``path`` (UNIX seconds as text), None while the file does not exist
    or is still empty; ValueError naming the file and its text when that is no usable
    epoch (:func:`check_epoch`)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ValueError(f"--epoch-file {path}: cannot be read ({exc})") from None
    if not text.strip():
        return None
    try:
        epoch = float(text.strip())
    except ValueError:
        raise ValueError(
            f"--epoch-file {path}: {text.strip()[:40]!r} is not a number; allowed UNIX "
            "seconds, e.g. 1800000000.5"
        ) from None
    try:
        return check_epoch(epoch, now)
    except ValueError as exc:
        raise ValueError(f"--epoch-file {path}: {exc}") from None


def default_max_frame(setup: NodeSetup) -> int:
    """Frame limit derived from the config: room for 8 copies of the model's weights
    plus 1 MiB, at least 4 MiB (a message carries a few vectors at most)."""
    return max(4 << 20, 8 * int(setup.initial_weights.nbytes) + (1 << 20))


def network_text(config: ExperimentConfig) -> str:
    """The config as nodes compare it in the handshake (output paths may differ)."""
    return to_yaml(config.model_copy(update={"output": OutputConfig()}))


def load_membership(options: NodeOptions) -> Membership | None:
    """The genesis file and own key of a node started with ``--genesis`` and ``--key``
    (both checked: the convener's signature, this node's key listed under its id)."""
    if options.genesis_file is None:
        return None
    assert options.key_file is not None  # NodeOptions requires it
    genesis = GenesisFile.load(options.genesis_file)
    pinned = None if options.convener is None else parse_convener(options.convener)
    genesis.check_pin(pinned, options.genesis_sha256, f"--genesis {options.genesis_file}")
    extra = load_extra_keys(options.key_file, genesis.extra.get(options.node_id, {}))
    return Membership(genesis, options.node_id, load_keypair(options.key_file), extra)


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
