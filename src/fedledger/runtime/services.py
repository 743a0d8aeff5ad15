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
from fedledger.ledger.finality import FinalityRule
from fedledger.ledger.forkchoice import ForkChoice, longest_chain
from fedledger.ledger.records import Block, Genesis, Member, genesis_block
from fedledger.ledger.store import ChainStore
from fedledger.protocols.base import NodePlan
from fedledger.protocols.services import NodeServices
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
    fork_choice: ForkChoice = longest_chain,
    finality: FinalityRule | None = None,
) -> NodeServices:
    """Open (or create) a node's ledger and blob store under ``node_dir``; the ledger
    starts from ``genesis``, and a reopened ledger must hold the same genesis."""
    node_dir.mkdir(parents=True, exist_ok=True)
    ledger = ChainStore(node_dir / "ledger.sqlite", fork_choice=fork_choice, finality=finality)
    if ledger.block_count() == 0:
        ledger.append(genesis)
    elif ledger.genesis().hash != genesis.hash:
        ledger.close()
        raise ValueError(
            f"{node_dir / 'ledger.sqlite'} belongs to another network: its genesis differs"
        )
    assert isinstance(genesis.header.extra, Genesis)
    return NodeServices(
        keys=keys[node_id],
        directory=genesis.header.extra.directory(),
        genesis=genesis,
        ledger=ledger,
        blobs=BlobStore(node_dir / "blobs"),
        addresses=tuple((n, keys[n].address) for n in sorted(keys)),
    )
