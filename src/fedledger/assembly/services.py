"""Creating the identities, genesis block and per-node stores of a chain-keeping run.

Layout of a run directory (what ``fedledger chain verify RUN_DIR`` reads):
``nodes/<node_id>/ledger.sqlite`` and ``nodes/<node_id>/blobs/``. A real node process
uses the same layout in its ``--data-dir``.

Keys come from one of two places. The simulator and ``localnet`` derive every node's key
from (seed, node id) (:func:`node_keys`), so runs reproduce, and anyone holding the config
holds every key. A real network uses random keys (``fedledger keygen``) and a genesis file
(``fedledger genesis``): the members' public keys by node id and the config digest, signed
by whoever convenes the network; each node holds only its own private key
(``assembly.genesis_file``: :class:`GenesisFile`, :class:`Membership`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

# the genesis file's names, re-exported: callers import them from here
from fedledger.assembly.genesis_file import (  # noqa: F401
    GENESIS_FORMAT,
    MEMBER_FORMAT,
    GenesisFile,
    Membership,
    MembershipError,
    config_sha256,
    make_genesis,
    member_json,
    parse_convener,
    read_member,
    read_member_file,
)
from fedledger.assembly.member_keys import MemberExtras
from fedledger.crypto import KeyPair, PublicKey
from fedledger.crypto.keys import KeyDirectory, derive_seed
from fedledger.ledger.records import Block, Genesis
from fedledger.ledger.store import ChainStore
from fedledger.protocols.base import NodePlan
from fedledger.protocols.resources import (
    MAIN,
    SHARED_CHAIN,
    AddressBook,
    NodeResources,
    NodeServices,
)
from fedledger.storage.blobs import BlobStore


def node_keys(plans: Sequence[NodePlan], seed: int, scheme: str = "ed25519") -> dict[str, KeyPair]:
    """One key pair per node: Ed25519 derived from (seed, node id), so runs reproduce;
    RSA keys cannot be seeded and are fresh each run."""
    if scheme == "ed25519":
        return {p.node_id: KeyPair.generate("ed25519", derive_seed(seed, p.node_id)) for p in plans}
    return {p.node_id: KeyPair.generate(scheme) for p in plans}


def open_node_services(
    node_id: str,
    node_dir: Path,
    keys: Mapping[str, KeyPair | PublicKey],
    genesis: Block,
    resources: NodeResources = SHARED_CHAIN,
    durable: bool = True,
    extras: MemberExtras | None = None,
    book: AddressBook | None = None,
    directory: KeyDirectory | None = None,
) -> NodeServices:
    """Open (or create) what ``resources`` declares for a node under ``node_dir``: each
    chain (the main one in ``ledger.sqlite``, others in ``chain-<name>.sqlite``) starting
    from ``genesis`` (a reopened chain must hold the same genesis) and its blob store.
    A node that declares nothing gets its keys and the members' directory only.
    ``durable=False`` (the simulator's stores) commits atomically without fsync: a crashed
    simulation is run again, while a real node keeps every commit through a power cut.
    ``keys``: every member's key by node id; this node's must be a private KeyPair.
    ``extras``: members' extra keys (required when ``resources`` declares any).
    ``book``, ``directory``: the members' address book and key directory when the caller
    opens many nodes (shared; a directory is given as a copy-on-add view)."""
    own = keys[node_id]
    extra = (extras or MemberExtras()).for_node(node_id, resources.extra_schemes)
    if not isinstance(own, KeyPair):
        raise TypeError(f"open_node_services needs {node_id!r}'s private key, got a public key")
    book = book or address_book(keys)
    members = tuple(address for _, address in book.pairs)
    chains: dict[str, ChainStore] = {}
    if resources.chains or resources.blobs is not None:
        node_dir.mkdir(parents=True, exist_ok=True)
    try:
        for name, spec in sorted(resources.chains.items()):
            finality = spec.finality(members) if spec.finality is not None else None
            path = node_dir / chain_file(name)
            store = ChainStore(
                path, fork_choice=spec.fork_choice, finality=finality, durable=durable
            )
            chains[name] = store
            if store.block_count() == 0:
                store.append(genesis)
            elif store.genesis().hash != genesis.hash:
                raise ValueError(f"{path} belongs to another network: its genesis differs")
    except BaseException:
        for store in chains.values():
            store.close()
        raise
    assert isinstance(genesis.header.extra, Genesis)
    blobs = None
    if resources.blobs is not None:
        key = own.derive_secret(BLOB_KEY_LABEL) if resources.blobs.encrypted else None
        blobs = BlobStore(node_dir / "blobs", key=key, durable=durable)
    return NodeServices(
        keys=own,
        directory=directory if directory is not None else genesis.header.extra.directory(),
        genesis=genesis,
        chains=chains,
        blobs=blobs,
        book=book,
        extra=extra,
    )


def address_book(keys: Mapping[str, KeyPair | PublicKey]) -> AddressBook:
    """Every member's address by node id, from their keys (build it once per network)."""
    return AddressBook(tuple((n, keys[n].address) for n in sorted(keys)))


#: What a node's blob-encryption key at rest is derived under, from its private key.
BLOB_KEY_LABEL = b"fedledger/blob-store/aes-gcm"


def chain_file(name: str) -> str:
    """The file of chain ``name`` in a node's directory."""
    return "ledger.sqlite" if name == MAIN else f"chain-{name}.sqlite"


def keys_only_services(node_id: str, plans: Sequence[NodePlan], seed: int) -> NodeServices:
    """Services of a node that declares no chain and no blob store: its derived key pair,
    the members' directory and the genesis block (tests and tools that build nodes by
    hand)."""
    keys = node_keys(plans, seed)
    genesis = make_genesis(keys, "")
    assert isinstance(genesis.header.extra, Genesis)
    return NodeServices(
        keys=keys[node_id],
        directory=genesis.header.extra.directory(),
        genesis=genesis,
        chains={},
        blobs=None,
        book=address_book(keys),
    )
