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
from fedledger.contracts.eth import EthKey
from fedledger.crypto import KeyDirectory, KeyPair
from fedledger.crypto.vrf import VrfKey, VrfPublicKey
from fedledger.ledger import roster as _roster  # noqa: F401  (registers Genesis.extra's record)
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
#: keys a node may hold beside its identity key (``fedledger.assembly.member_keys``): an
#: RFC 9381 VRF key (committee sortition) and a secp256k1 key (contracts, ecrecover)
EXTRA_KEY_SCHEMES = ("vrf", "secp256k1")


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
    finality gadget), its catch-up policy, and ``certified_by``: the committee (one of
    ``Protocol.committees``) whose 2f+1 commit certificate every block above genesis
    carries (PBFT), which ``fedledger chain verify`` checks; None: no certificates.
    ``live``: with ``CatchUp.PEERS``, a real node also catches the chain up while it runs
    whenever it falls behind its peers, and tells the node (``ChainSynced``), which must
    then rebuild what it derived from the chain (``runtime.node.live_sync``)."""

    fork_choice: ForkChoice = longest_chain
    finality: FinalityFactory | None = None
    catch_up: CatchUp = CatchUp.PEERS
    certified_by: str | None = None
    live: bool = False


@dataclass(frozen=True)
class BlobSpec:
    """A content-addressed blob store; ``encrypted``: AES-GCM at rest."""

    encrypted: bool = False


@dataclass(frozen=True)
class NodeResources:
    """Everything one node needs opened for it.

    chains: named chains (empty: the node keeps no ledger);
    blobs: its blob store, or None;
    key_schemes: the signature schemes it signs with (the first one, ed25519 or rsa, is
        its identity; the others are extra keys from EXTRA_KEY_SCHEMES, provided in
        NodeServices.extra: derived in the simulator, from key files on a real network);
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
        bad = [s for s in self.key_schemes[1:] if s not in EXTRA_KEY_SCHEMES]
        if not self.key_schemes or self.key_schemes[0] not in KEY_SCHEMES or bad:
            raise ValueError(
                f"key_schemes {self.key_schemes!r}: the first is the identity, one of "
                f"{', '.join(KEY_SCHEMES)}; the others from {', '.join(EXTRA_KEY_SCHEMES)}"
            )
        if self.root_samples < 0:
            raise ValueError(f"root_samples must be >= 0, got {self.root_samples}")
        for name in self.chains:
            if not name or not name.replace("-", "").replace("_", "").isalnum():
                raise ValueError(f"chain name {name!r}: use letters, digits, '-' and '_'")

    @property
    def keeps_chain(self) -> bool:
        return bool(self.chains)

    @property
    def extra_schemes(self) -> tuple[str, ...]:
        """The declared keys beside the identity key (e.g. ``("vrf",)``)."""
        return tuple(dict.fromkeys(self.key_schemes[1:]))


#: A node that keeps one chain of its own, shared by the network, and a blob store.
SHARED_CHAIN = NodeResources(chains=MappingProxyType({MAIN: ChainSpec()}), blobs=BlobSpec())


@dataclass(frozen=True)
class NodeExtraKeys:
    """A node's extra keys (None: not declared) and the members' registered public ones:
    VRF public keys and secp256k1 (Ethereum) addresses by node id."""

    vrf: VrfKey | None = None
    eth: EthKey | None = None
    vrf_keys: Mapping[str, VrfPublicKey] = field(default_factory=lambda: MappingProxyType({}))
    eth_addresses: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class AddressBook:
    """Every member's address by node id and back, built once per network and shared by
    all the nodes a host runs (a copy per node would cost N squared entries)."""

    pairs: tuple[tuple[str, bytes], ...]  # node id -> address, in node-id order
    by_id: Mapping[str, bytes] = field(init=False, repr=False, compare=False)
    by_address: Mapping[bytes, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_id", dict(self.pairs))
        object.__setattr__(self, "by_address", {a: n for n, a in self.pairs})


@dataclass(frozen=True)
class NodeServices:
    """What the host opened for a node, as its protocol declared.

    keys: the node's own key pair; directory: every member's public key (from the
    genesis block); genesis: the height-0 block all nodes share; chains: its chain
    stores by name; blobs: its content-addressed blob store (None if not declared);
    book: every member's address by node id and back (shared by a host's nodes);
    extra: the node's own extra keys (those its resources declare: ``vrf`` and
    ``secp256k1`` in ``key_schemes``) and every member's public ones as registered at
    genesis (the VRF keys committee selection verifies tickets against).
    """

    keys: KeyPair
    directory: KeyDirectory
    genesis: Block
    chains: Mapping[str, ChainStore]
    blobs: BlobStore | None
    book: AddressBook
    extra: NodeExtraKeys = field(default_factory=lambda: NodeExtraKeys())

    @property
    def addresses(self) -> tuple[tuple[str, bytes], ...]:
        """node id -> address, in node-id order."""
        return self.book.pairs

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
            return self.book.by_id[node_id]
        except KeyError:
            raise KeyError(f"no address for node {node_id!r}") from None

    def node_of(self, address: bytes) -> str | None:
        return self.book.by_address.get(address)

    def close(self) -> None:
        for store in self.chains.values():
            store.close()
