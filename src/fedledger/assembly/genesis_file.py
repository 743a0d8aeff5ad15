"""Genesis files and the genesis block: member files, the convener-signed genesis file,
a real node's membership, and the height-0 block built from them.

A real network uses random keys (``fedledger keygen``) and a genesis file (``fedledger
genesis``): the members' public keys (and the extra keys their protocol declares) by
node id, the protocol's committees and the config digest, signed by whoever convenes the
network (:class:`GenesisFile`); each node holds only its own private keys
(:class:`Membership`) and pins the convener (:meth:`GenesisFile.check_pin`). The
simulator and ``localnet`` build the same genesis block from derived keys
(:func:`make_genesis`, via ``assembly.services``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fedledger.assembly.member_keys import ExtraKeys, MemberExtras, PublicExtras, parse_public
from fedledger.crypto import KeyPair, PublicKey
from fedledger.crypto.keys import CryptoError
from fedledger.ledger.records import Block, Genesis, Member, genesis_block
from fedledger.ledger.roster import Committee, Roster


def make_genesis(
    keys: Mapping[str, KeyPair | PublicKey],
    config_text: str,
    committees: Mapping[str, Sequence[str]] | None = None,
) -> Block:
    """The height-0 block: every member's key (in node-id order), the config digest and
    the protocol's committees by name (node ids in order; ``Genesis.extra`` is a
    :class:`~fedledger.ledger.roster.Roster`, None when there are none)."""
    members = tuple(Member.of(keys[n]) for n in sorted(keys))
    roster = None
    if committees:
        unknown = sorted({n for ids in committees.values() for n in ids} - set(keys))
        if unknown:
            raise MembershipError(f"committee members that are not members: {unknown}")
        roster = Roster(
            tuple(
                Committee(name, tuple(keys[n].address for n in ids))
                for name, ids in sorted(committees.items())
            )
        )
    digest = config_sha256(config_text)
    return genesis_block(Genesis(members=members, config_digest=digest, extra=roster))


def config_sha256(config_text: str) -> bytes:
    return hashlib.sha256(config_text.encode()).digest()


MEMBER_FORMAT = "fedledger-member/1"
GENESIS_FORMAT = "fedledger-genesis/1"
_GENESIS_DOMAIN = b"fedledger/genesis-file/v1\x00"


class MembershipError(CryptoError):
    """A member or genesis file that is malformed, unsigned, or does not fit the node."""


def member_json(node_id: str, key: PublicKey, extra: Mapping[str, str] | None = None) -> str:
    """The public member file ``fedledger keygen`` writes beside the private key; ``extra``:
    the public parts of the node's extra keys by scheme (``member_keys``)."""
    record: dict[str, object] = {
        "format": MEMBER_FORMAT,
        "node": node_id,
        "scheme": key.scheme,
        "public_key": key.to_bytes().hex(),
    }
    if extra:
        record["extra_keys"] = dict(sorted(extra.items()))
    return json.dumps(record, indent=1) + "\n"


def _extras(where: str, raw: object) -> dict[str, str]:
    """scheme -> canonical public text from a file's ``extra_keys`` object."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise MembershipError(f"{where}: extra_keys must be an object of scheme: public key")
    try:
        return {str(s): parse_public(where, str(s), t) for s, t in sorted(raw.items())}
    except ValueError as err:
        raise MembershipError(str(err)) from None


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
    node_id, public, _ = read_member(path)
    return node_id, public


def read_member(path: Path) -> tuple[str, PublicKey, dict[str, str]]:
    """(node id, identity public key, extra public keys by scheme) from a member file."""
    record = _load_json(path, MEMBER_FORMAT)
    node_id = record.get("node")
    if not isinstance(node_id, str) or not node_id:
        raise MembershipError(f"{path}: no node id")
    return node_id, _public(str(path), record), _extras(str(path), record.get("extra_keys"))


def _extra_body(extra: PublicExtras | None) -> dict[str, dict[str, str]]:
    """Members' extra keys in canonical order, members without any left out."""
    return {n: dict(sorted(k.items())) for n, k in sorted((extra or {}).items()) if k}


def parse_convener(text: str) -> PublicKey:
    """A pinned convener key (``--convener``): a member file (``fedledger keygen`` of the
    convener), or an Ed25519 public key as 64 hex digits."""
    path = Path(text)
    if path.is_file():
        return read_member_file(path)[1]
    try:
        return PublicKey.from_bytes("ed25519", bytes.fromhex(text))
    except ValueError:
        raise MembershipError(
            f"--convener {text!r:.80}: neither a member file nor an Ed25519 public key in hex "
            "(64 digits, as `fedledger genesis` prints it)"
        ) from None


@dataclass(frozen=True)
class GenesisFile:
    """A network's founding members by node id and its config digest, signed by the
    convener (whoever assembled the members' public keys)."""

    config_digest: bytes
    members: Mapping[str, PublicKey]
    convener: PublicKey
    signature: bytes
    #: members' extra public keys (VRF, secp256k1) by node id and scheme, signed too
    extra: PublicExtras = field(default_factory=dict)
    #: the protocol's committees (``Protocol.committees``): node ids in order, signed too
    committees: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @staticmethod
    def signed_bytes(
        config_digest: bytes,
        members: Mapping[str, PublicKey],
        extra: PublicExtras | None = None,
        committees: Mapping[str, Sequence[str]] | None = None,
    ) -> bytes:
        body: dict[str, object] = {
            "config_sha256": config_digest.hex(),
            "members": {
                n: {"scheme": k.scheme, "public_key": k.to_bytes().hex()}
                for n, k in sorted(members.items())
            },
        }
        extras = _extra_body(extra)
        if extras:  # absent when no member has one: older genesis files verify unchanged
            body["extra_keys"] = extras
        if committees:
            body["committees"] = {n: list(ids) for n, ids in sorted(committees.items())}
        return _GENESIS_DOMAIN + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def sign(
        cls,
        members: Mapping[str, PublicKey],
        config_text: str,
        convener: KeyPair,
        extra: PublicExtras | None = None,
        committees: Mapping[str, Sequence[str]] | None = None,
    ) -> GenesisFile:
        if not members:
            raise MembershipError("a genesis needs at least one member file")
        digest = config_sha256(config_text)
        members = dict(sorted(members.items()))
        extras = _extra_body(extra)
        unknown = sorted(set(extras) - set(members))
        if unknown:
            raise MembershipError(f"extra keys of nodes that are not members: {unknown}")
        teams = {n: tuple(ids) for n, ids in sorted((committees or {}).items())}
        outside = sorted({n for ids in teams.values() for n in ids} - set(members))
        if outside:
            raise MembershipError(f"committee members that are not members: {outside}")
        signature = convener.sign(cls.signed_bytes(digest, members, extras, teams))
        return cls(digest, members, convener.public, signature, extras, teams)

    @property
    def digest(self) -> str:
        """SHA-256 (hex) of what the convener signed: the genesis a node may pin
        (``fedledger node --genesis-sha256``); independent of the file's layout."""
        signed = self.signed_bytes(self.config_digest, self.members, self.extra, self.committees)
        return hashlib.sha256(signed).hexdigest()

    def check_pin(self, convener: PublicKey | None, digest: str | None, where: str) -> None:
        """Refuse a genesis not signed by the pinned ``convener`` key, or whose
        :attr:`digest` is not the pinned one; at least one pin is required."""
        if convener is None and digest is None:
            raise MembershipError(
                f"{where}: no pin for the genesis: give the convener's public key (--convener "
                "HEX or its member file) or the genesis's SHA-256 (--genesis-sha256, printed "
                "by `fedledger genesis`), learnt from the convener out of band; a genesis "
                "file alone could have been re-signed by anyone"
            )
        if convener is not None and convener != self.convener:
            raise MembershipError(
                f"{where}: signed by {self.convener.to_bytes().hex()[:16]}..., not by the "
                f"pinned convener {convener.to_bytes().hex()[:16]}...: refusing this genesis"
            )
        if digest is not None and digest.lower() != self.digest:
            raise MembershipError(
                f"{where}: its SHA-256 is {self.digest[:16]}..., not the pinned "
                f"{digest.lower()[:16]}...: refusing this genesis"
            )

    def to_json(self) -> str:
        record: dict[str, object] = {
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
        if self.extra:
            record["extra_keys"] = _extra_body(self.extra)
        if self.committees:
            record["committees"] = {n: list(ids) for n, ids in sorted(self.committees.items())}
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
        raw_extra = record.get("extra_keys", {})
        if not isinstance(raw_extra, dict):
            raise MembershipError(f"{path}: extra_keys must be an object by node id")
        extra = {str(n): _extras(f"{path}: member {n!r}", e) for n, e in raw_extra.items()}
        raw_teams = record.get("committees", {})
        if not isinstance(raw_teams, dict) or not all(
            isinstance(ids, list) and all(isinstance(i, str) for i in ids)
            for ids in raw_teams.values()
        ):
            raise MembershipError(f"{path}: committees must map names to lists of node ids")
        teams = {str(n): tuple(ids) for n, ids in sorted(raw_teams.items())}
        signed = cls.signed_bytes(digest, members, extra, teams)
        if len(digest) != 32 or not convener.verify(signed, signature):
            raise MembershipError(
                f"{path}: the convener's signature does not verify over the members and config "
                "digest (the file was changed after `fedledger genesis` signed it)"
            )
        return cls(digest, members, convener, signature, _extra_body(extra), teams)

    def block(self, config_text: str) -> Block:
        """The genesis block of this network under ``config_text`` (the node's config must
        be the one the genesis was signed for)."""
        if config_sha256(config_text) != self.config_digest:
            raise MembershipError(
                f"the config's SHA-256 {config_sha256(config_text).hex()[:16]} is not the one "
                f"the genesis file was signed for ({self.config_digest.hex()[:16]}): every node "
                "must run the exact config (and overrides) given to `fedledger genesis`"
            )
        return make_genesis(self.members, config_text, self.committees)


@dataclass(frozen=True)
class Membership:
    """A real node's view of its network: the signed genesis file and its own key."""

    genesis: GenesisFile
    node_id: str
    key: KeyPair
    #: the node's extra keys (VRF, secp256k1), each the one the genesis lists for it
    extra: ExtraKeys = field(default_factory=ExtraKeys)

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
        registered = dict(self.genesis.extra.get(self.node_id, {}))
        if self.extra.publics() != registered:
            raise MembershipError(
                f"the extra keys given for {self.node_id!r} ({self.extra.publics()}) are not "
                f"the ones the genesis file registers for it ({registered})"
            )

    def extras(self) -> MemberExtras:
        """Members' registered extra public keys and this node's private ones."""
        return MemberExtras(self.genesis.extra, {self.node_id: self.extra})

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
