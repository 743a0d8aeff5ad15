"""Creating the identities, genesis block and per-node stores of a chain-keeping run.

Layout of a run directory (what ``fedledger chain verify RUN_DIR`` reads):
``nodes/<node_id>/ledger.sqlite`` and ``nodes/<node_id>/blobs/``. A real node process
uses the same layout in its ``--data-dir``.

Keys come from one of two places. The simulator and ``localnet`` derive every node's key
from (seed, node id) (:func:`node_keys`), so runs reproduce, and anyone holding the config
holds every key. A real network uses random keys (``fedledger keygen``) and a genesis file
(``fedledger genesis``): the members' public keys by node id and the config digest, signed
by whoever convenes the network (:class:`GenesisFile`); each node holds only its own
private key (:class:`Membership`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from fedledger.crypto import KeyPair, PublicKey
from fedledger.crypto.keys import CryptoError, derive_seed
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


def make_genesis(keys: Mapping[str, KeyPair | PublicKey], config_text: str) -> Block:
    """The height-0 block: every member's key (in node-id order) and the config digest."""
    members = tuple(Member.of(keys[n]) for n in sorted(keys))
    return genesis_block(Genesis(members=members, config_digest=config_sha256(config_text)))


def config_sha256(config_text: str) -> bytes:
    return hashlib.sha256(config_text.encode()).digest()


MEMBER_FORMAT = "fedledger-member/1"
GENESIS_FORMAT = "fedledger-genesis/1"
_GENESIS_DOMAIN = b"fedledger/genesis-file/v1\x00"


class MembershipError(CryptoError):
    """A member or genesis file that is malformed, unsigned, or does not fit the node."""


def member_json(node_id: str, key: PublicKey) -> str:
    """The public member file ``fedledger keygen`` writes beside the private key."""
    record = {
        "format": MEMBER_FORMAT,
        "node": node_id,
        "scheme": key.scheme,
        "public_key": key.to_bytes().hex(),
    }
    return json.dumps(record, indent=1) + "\n"


def _public(where: str, record: object) -> PublicKey:
    if not isinstance(record, dict):
        raise MembershipError(f"{where}: expected an object with scheme and public_key")
    try:
        return PublicKey.from_bytes(str(record["scheme"]), bytes.fromhex(str(record["public_key"])))
    except (KeyError, ValueError) as err:
        raise MembershipError(f"{where}: no valid scheme and public_key ({err})") from None


def _load_json(path: Path, fmt: str) -> dict[str, object]:
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MembershipError(f"{path}: cannot be read as JSON ({err})") from None
    if not isinstance(record, dict) or record.get("format") != fmt:
        got = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise MembershipError(f"{path}: format {got!r}; expected {fmt!r}")
    return record


def read_member_file(path: Path) -> tuple[str, PublicKey]:
    """(node id, public key) from a member file written by ``fedledger keygen``."""
    record = _load_json(path, MEMBER_FORMAT)
    node_id = record.get("node")
    if not isinstance(node_id, str) or not node_id:
        raise MembershipError(f"{path}: no node id")
    return node_id, _public(str(path), record)


@dataclass(frozen=True)
class GenesisFile:
    """A network's founding members by node id and its config digest, signed by the
    convener (whoever assembled the members' public keys)."""

    config_digest: bytes
    members: Mapping[str, PublicKey]
    convener: PublicKey
    signature: bytes

    @staticmethod
    def signed_bytes(config_digest: bytes, members: Mapping[str, PublicKey]) -> bytes:
        body = {
            "config_sha256": config_digest.hex(),
            "members": {
                n: {"scheme": k.scheme, "public_key": k.to_bytes().hex()}
                for n, k in sorted(members.items())
            },
        }
        return _GENESIS_DOMAIN + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def sign(
        cls, members: Mapping[str, PublicKey], config_text: str, convener: KeyPair
    ) -> GenesisFile:
        if not members:
            raise MembershipError("a genesis needs at least one member file")
        digest = config_sha256(config_text)
        members = dict(sorted(members.items()))
        signature = convener.sign(cls.signed_bytes(digest, members))
        return cls(digest, members, convener.public, signature)

    def to_json(self) -> str:
        record = {
            "format": GENESIS_FORMAT,
            "config_sha256": self.config_digest.hex(),
            "members": {
                n: {"scheme": k.scheme, "public_key": k.to_bytes().hex()}
                for n, k in sorted(self.members.items())
            },
            "convener": {
                "scheme": self.convener.scheme,
                "public_key": self.convener.to_bytes().hex(),
            },
            "signature": self.signature.hex(),
        }
        return json.dumps(record, indent=1) + "\n"

    @classmethod
    def load(cls, path: Path) -> GenesisFile:
        """Read and verify a genesis file (MembershipError naming what is wrong)."""
        record = _load_json(path, GENESIS_FORMAT)
        members_raw = record.get("members")
        if not isinstance(members_raw, dict) or not members_raw:
            raise MembershipError(f"{path}: no members")
        members = {str(n): _public(f"{path}: member {n!r}", m) for n, m in members_raw.items()}
        try:
            digest = bytes.fromhex(str(record.get("config_sha256")))
            signature = bytes.fromhex(str(record.get("signature")))
        except ValueError:
            raise MembershipError(f"{path}: config_sha256 and signature must be hex") from None
        convener = _public(f"{path}: convener", record.get("convener"))
        if len(digest) != 32 or not convener.verify(cls.signed_bytes(digest, members), signature):
            raise MembershipError(
                f"{path}: the convener's signature does not verify over the members and config "
                "digest (the file was changed after `fedledger genesis` signed it)"
            )
        return cls(digest, members, convener, signature)

    def block(self, config_text: str) -> Block:
        """The genesis block of this network under ``config_text`` (the node's config must
        be the one the genesis was signed for)."""
        if config_sha256(config_text) != self.config_digest:
            raise MembershipError(
                f"the config's SHA-256 {config_sha256(config_text).hex()[:16]} is not the one "
                f"the genesis file was signed for ({self.config_digest.hex()[:16]}): every node "
                "must run the exact config (and overrides) given to `fedledger genesis`"
            )
        return make_genesis(self.members, config_text)


@dataclass(frozen=True)
class Membership:
    """A real node's view of its network: the signed genesis file and its own key."""

    genesis: GenesisFile
    node_id: str
    key: KeyPair

    def __post_init__(self) -> None:
        listed = self.genesis.members.get(self.node_id)
        if listed is None:
            raise MembershipError(
                f"node {self.node_id!r} is not a member of the genesis file; members are "
                f"{sorted(self.genesis.members)}"
            )
        if listed != self.key.public:
            raise MembershipError(
                f"the key given for {self.node_id!r} ({self.key.public.to_bytes().hex()[:16]}) "
                f"is not its key in the genesis file ({listed.to_bytes().hex()[:16]})"
            )

    def resolve(
        self, node_ids: Sequence[str], config_text: str
    ) -> tuple[dict[str, KeyPair | PublicKey], Block]:
        """Keys by node id (this node's private, the others' public) and the genesis block;
        the genesis must list exactly the config's nodes."""
        if sorted(node_ids) != sorted(self.genesis.members):
            raise MembershipError(
                f"the genesis file lists {sorted(self.genesis.members)}; the config's nodes "
                f"are {sorted(node_ids)}"
            )
        keys: dict[str, KeyPair | PublicKey] = dict(self.genesis.members)
        keys[self.node_id] = self.key
        return keys, self.genesis.block(config_text)


def open_node_services(
    node_id: str,
    node_dir: Path,
    keys: Mapping[str, KeyPair | PublicKey],
    genesis: Block,
    resources: NodeResources = SHARED_CHAIN,
    durable: bool = True,
) -> NodeServices:
    """Open (or create) what ``resources`` declares for a node under ``node_dir``: each
    chain (the main one in ``ledger.sqlite``, others in ``chain-<name>.sqlite``) starting
    from ``genesis`` (a reopened chain must hold the same genesis) and its blob store.
    A node that declares nothing gets its keys and the members' directory only.
    ``durable=False`` (the simulator's stores) commits atomically without fsync: a crashed
    simulation is run again, while a real node keeps every commit through a power cut.
    ``keys``: every member's key by node id; this node's must be a private KeyPair."""
    own = keys[node_id]
    if not isinstance(own, KeyPair):
        raise TypeError(f"open_node_services needs {node_id!r}'s private key, got a public key")
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
        key = own.derive_secret(BLOB_KEY_LABEL) if resources.blobs.encrypted else None
        blobs = BlobStore(node_dir / "blobs", key=key, durable=durable)
    return NodeServices(
        keys=own,
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
