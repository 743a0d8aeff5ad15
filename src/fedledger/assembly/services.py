"""Creating the identities, genesis block and per-node stores of a chain-keeping run.

Layout of a run directory (what ``fedledger chain verify RUN_DIR`` reads):
``nodes/<node_id>/ledger.sqlite`` and ``nodes/<node_id>/blobs/``. A real node process
uses the same layout in its ``--data-dir``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from fedledger.crypto import KeyPair
from fedledger.crypto.keys import derive_seed
from fedledger.ledger.records import Block, Genesis, Member, genesis_block
from fedledger.ledger.store import ChainStore
from fedledger.protocols.base import NodePlan
from fedledger.protocols.resources import MAIN, SHARED_CHAIN, NodeResources, NodeServices
from fedledger.storage.blobs import BlobStore


def node_keys(plans: Sequence[NodePlan], seed: int, scheme: str = "ed25519") -> dict[str, KeyPair]:
    """One key pair per node: Ed25519 derived from (seed, node id), so runs reproduce;
    RSA keys cannot be seeded and are fresh each run."""
    if scheme == "ed25519":
        return {p.node_id: KeyPair.generate("ed25519", derive_seed(seed, p.node_id)) for p in plans}
    return {p.node_id: KeyPair.generate(scheme) for p in plans}


def make_genesis(keys: dict[str, KeyPair], config_text: str) -> Block:
    """The height-0 block: every member's key (in node-id order) and the config digest."""
    members = tuple(Member.of(keys[n]) for n in sorted(keys))
    digest = hashlib.sha256(config_text.encode()).digest()
    return genesis_block(Genesis(members=members, config_digest=digest))


def open_node_services(
    node_id: str,
    node_dir: Path,
    keys: dict[str, KeyPair],
    genesis: Block,
    resources: NodeResources = SHARED_CHAIN,
    durable: bool = True,
) -> NodeServices:
    """Open (or create) what ``resources`` declares for a node under ``node_dir``: each
    chain (the main one in ``ledger.sqlite``, others in ``chain-<name>.sqlite``) starting
    from ``genesis`` (a reopened chain must hold the same genesis) and its blob store.
    A node that declares nothing gets its keys and the members' directory only.
    ``durable=False`` (the simulator's stores) commits atomically without fsync: a crashed
    simulation is run again, while a real node keeps every commit through a power cut."""
    members = tuple(keys[n].address for n in sorted(keys))
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
        key = keys[node_id].derive_secret(BLOB_KEY_LABEL) if resources.blobs.encrypted else None
        blobs = BlobStore(node_dir / "blobs", key=key, durable=durable)
    return NodeServices(
        keys=keys[node_id],
        directory=genesis.header.extra.directory(),
        genesis=genesis,
        chains=chains,
        blobs=blobs,
        addresses=tuple((n, keys[n].address) for n in sorted(keys)),
    )


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
        addresses=tuple((n, keys[n].address) for n in sorted(keys)),
    )
