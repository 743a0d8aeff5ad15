"""The local stores a host gives a protocol node that keeps a chain.

Local, persistent and deterministic, so using them keeps a protocol sans-IO: the node
appends to its own ledger and blob store synchronously; everything that crosses the
network still goes through effects.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedledger.crypto import KeyDirectory, KeyPair
from fedledger.ledger.records import Block
from fedledger.ledger.store import ChainStore
from fedledger.storage.blobs import BlobStore


@dataclass(frozen=True)
class NodeServices:
    """keys: the node's own key pair; directory: every member's public key (from the
    genesis block); genesis: the height-0 block all nodes share; ledger: the node's chain
    store; blobs: its content-addressed blob store; addresses: node id -> address."""

    keys: KeyPair
    directory: KeyDirectory
    genesis: Block
    ledger: ChainStore
    blobs: BlobStore
    addresses: tuple[tuple[str, bytes], ...]

    def address_of(self, node_id: str) -> bytes:
        for nid, address in self.addresses:
            if nid == node_id:
                return address
        raise KeyError(f"no address for node {node_id!r}")

    def node_of(self, address: bytes) -> str | None:
        for nid, addr in self.addresses:
            if addr == address:
                return nid
        return None
