"""What a protocol's node needs from its host, declared once per protocol.

A protocol says, per node, which chains it keeps (each with its fork choice, finality
rule and catch-up policy), whether it keeps a blob store (optionally encrypted at rest),
which key schemes it signs with and whether it holds a trusted root dataset. The
assembly layer opens exactly that and hands it to the node as :class:`NodeServices`; no
host or runner knows a protocol by name or by a special flag.

The stores are local, persistent and deterministic, so using them keeps a protocol
sans-IO: the node appends to its own chains and blob store synchronously; everything
that crosses the network still goes through effects.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from fedledger.contracts.effects import ContractSpec
from fedledger.crypto import KeyDirectory, KeyPair
from fedledger.ledger.finality import FinalityRule
from fedledger.ledger.forkchoice import ForkChoice, longest_chain
from fedledger.ledger.records import Block
from fedledger.ledger.store import ChainStore
from fedledger.storage.blobs import BlobStore

#: The chain a protocol with one chain per node calls its own; its file is
#: ``nodes/<id>/ledger.sqlite`` (other chains: ``nodes/<id>/chain-<name>.sqlite``).
MAIN = "main"

#: Given the members' addresses (node-id order), the chain's finality rule.
FinalityFactory = Callable[[tuple[bytes, ...]], FinalityRule]

KEY_SCHEMES = ("ed25519", "rsa")


class CatchUp(StrEnum):
    """How a (re)starting real node brings a chain up to date.

    PEERS: fetch the blocks it missed from its peers (one chain shared by all nodes);
    OWN: the chain holds only this node's own blocks, nothing to fetch (DFL);
    NONE: no catch-up at all.
    """

    PEERS = "peers"
    OWN = "own"
    NONE = "none"


@dataclass(frozen=True)
class ChainSpec:
    """One named chain a node keeps: its fork choice, its finality rule (None: no
    finality gadget) and its catch-up policy."""

    fork_choice: ForkChoice = longest_chain
    finality: FinalityFactory | None = None
    catch_up: CatchUp = CatchUp.PEERS


@dataclass(frozen=True)
class BlobSpec:
    """A content-addressed blob store; ``encrypted``: AES-GCM at rest."""

    encrypted: bool = False


@dataclass(frozen=True)
class NodeResources:
    """Everything one node needs opened for it.

    chains: named chains (empty: the node keeps no ledger);
    blobs: its blob store, or None;
    key_schemes: the signature schemes it signs with (the first one is its identity);
    root_samples: size of a trusted root dataset drawn from the data holders' clean
        data (FLTrust's server), 0 for none;
    contract: a chain with a contract the node talks to through the chain effects
        (``fedledger.contracts.effects``), shared by every node that declares the same
        spec, or None.
    """

    chains: Mapping[str, ChainSpec] = field(default_factory=lambda: MappingProxyType({}))
    blobs: BlobSpec | None = None
    key_schemes: tuple[str, ...] = ("ed25519",)
    root_samples: int = 0
    contract: ContractSpec | None = None

    def __post_init__(self) -> None:
        bad = [s for s in self.key_schemes if s not in KEY_SCHEMES]
        if not self.key_schemes or bad:
            raise ValueError(
                f"key_schemes {self.key_schemes!r}: allowed are {', '.join(KEY_SCHEMES)}"
            )
        if self.root_samples < 0:
            raise ValueError(f"root_samples must be >= 0, got {self.root_samples}")
        for name in self.chains:
            if not name or not name.replace("-", "").replace("_", "").isalnum():
                raise ValueError(f"chain name {name!r}: use letters, digits, '-' and '_'")

    @property
    def keeps_chain(self) -> bool:
        return bool(self.chains)


#: A node that keeps one chain of its own, shared by the network, and a blob store.
SHARED_CHAIN = NodeResources(chains=MappingProxyType({MAIN: ChainSpec()}), blobs=BlobSpec())


@dataclass(frozen=True)
class NodeServices:
    """What the host opened for a node, as its protocol declared.

    keys: the node's own key pair; directory: every member's public key (from the
    genesis block); genesis: the height-0 block all nodes share; chains: its chain
    stores by name; blobs: its content-addressed blob store (None if not declared);
    addresses: node id -> address, in node-id order.
    """

    keys: KeyPair
    directory: KeyDirectory
    genesis: Block
    chains: Mapping[str, ChainStore]
    blobs: BlobStore | None
    addresses: tuple[tuple[str, bytes], ...]
    _by_id: Mapping[str, bytes] = field(init=False, repr=False, compare=False)
    _by_address: Mapping[bytes, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", dict(self.addresses))
        object.__setattr__(self, "_by_address", {a: n for n, a in self.addresses})

    @property
    def ledger(self) -> ChainStore:
        """The node's main chain (protocols with one chain per node)."""
        return self.chain(MAIN)

    @property
    def blob_store(self) -> BlobStore:
        """The blob store, for protocols that declared one."""
        if self.blobs is None:
            raise LookupError("this node declared no blob store (NodeResources.blobs)")
        return self.blobs

    def chain(self, name: str) -> ChainStore:
        try:
            return self.chains[name]
        except KeyError:
            raise LookupError(
                f"no chain {name!r} on this node; it declared {sorted(self.chains) or 'none'}"
            ) from None

    def address_of(self, node_id: str) -> bytes:
        try:
            return self._by_id[node_id]
        except KeyError:
            raise KeyError(f"no address for node {node_id!r}") from None

    def node_of(self, address: bytes) -> str | None:
        return self._by_address.get(address)

    def close(self) -> None:
        for store in self.chains.values():
            store.close()
