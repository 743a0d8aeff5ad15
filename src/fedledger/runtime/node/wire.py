"""The network's own records: handshake, signed envelope, pings, blob and chain requests.

Every frame holds the canonical encoding (fedledger.codec) of one record. After the
handshake every frame is an :class:`Envelope`: a session id bound to the handshake's two
nonces, a per-direction sequence number starting at 1, the canonical bytes of the
payload, and the sender's signature over all three. A receiver accepts exactly the next
sequence number of the current session, so a frame replayed within a session, or from
an older one, is refused (``replay``) even though its signature is valid.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from fedledger.codec import record
from fedledger.crypto import KeyPair, PublicKey

VERSION = 1
NONCE_SIZE = 32
SESSION_SIZE = 16
_AUTH_CONTEXT = b"fedledger/net/auth/v1\x00"
_SESSION_CONTEXT = b"fedledger/net/session/v1\x00"
_ENVELOPE_CONTEXT = b"fedledger/net/envelope/v1\x00"


@record("net.Hello")
@dataclass(frozen=True)
class Hello:
    """First frame each side sends: who it claims to be, and a fresh nonce."""

    version: int
    network: bytes
    node_id: str
    scheme: str
    public_key: bytes
    nonce: bytes


@record("net.Auth")
@dataclass(frozen=True)
class Auth:
    """Second frame: the signature proving the key of the Hello, bound to both nonces."""

    signature: bytes


@record("net.Envelope")
@dataclass(frozen=True)
class Envelope:
    session: bytes
    seq: int
    body: bytes
    signature: bytes


@record("net.Ping")
@dataclass(frozen=True)
class Ping:
    """Keep-alive; any frame counts as a sign of life."""

    time: float


@record("net.BlobRequest")
@dataclass(frozen=True)
class BlobRequest:
    req_id: int
    cid: str
    offset: int
    length: int


@record("net.BlobReply")
@dataclass(frozen=True)
class BlobReply:
    """A chunk of a blob (``found`` False: the peer does not have it)."""

    req_id: int
    cid: str
    found: bool
    offset: int
    total: int
    data: bytes


@record("net.BlocksRequest")
@dataclass(frozen=True)
class BlocksRequest:
    """Canonical blocks of chain ``chain`` from ``from_height`` on, at most ``limit``."""

    req_id: int
    from_height: int
    limit: int
    chain: str = "main"


@record("net.BlocksReply")
@dataclass(frozen=True)
class BlocksReply:
    """Canonically encoded blocks, and the peer's head height."""

    req_id: int
    head_height: int
    blocks: tuple[bytes, ...]


Request = BlobRequest | BlocksRequest
Reply = BlobReply | BlocksReply
NET_RECORDS = (Hello, Auth, Envelope, Ping, BlobRequest, BlobReply, BlocksRequest, BlocksReply)


def network_digest(config_text: str, genesis_hash: bytes = b"") -> bytes:
    """What two nodes must share to talk: their config (and genesis block, if any)."""
    h = hashlib.sha256(b"fedledger/net/network/v1\x00")
    h.update(config_text.encode())
    h.update(genesis_hash)
    return h.digest()


def auth_message(network: bytes, own: Hello, peer: Hello) -> bytes:
    return _AUTH_CONTEXT + network + peer.nonce + own.nonce + own.public_key + peer.public_key


def sign_auth(key: KeyPair, network: bytes, own: Hello, peer: Hello) -> Auth:
    return Auth(key.sign(auth_message(network, own, peer)))


def auth_ok(key: PublicKey, auth: Auth, network: bytes, peer: Hello, own: Hello) -> bool:
    """Whether ``auth`` (sent by the owner of ``peer``) proves its key for this handshake."""
    return key.verify(auth_message(network, peer, own), auth.signature)


def session_id(network: bytes, dialer_nonce: bytes, listener_nonce: bytes) -> bytes:
    digest = hashlib.sha256(_SESSION_CONTEXT + network + dialer_nonce + listener_nonce).digest()
    return digest[:SESSION_SIZE]


def _envelope_message(session: bytes, seq: int, body: bytes) -> bytes:
    return _ENVELOPE_CONTEXT + session + seq.to_bytes(8, "big") + hashlib.sha256(body).digest()


def seal(key: KeyPair, session: bytes, seq: int, body: bytes) -> Envelope:
    return Envelope(session, seq, body, key.sign(_envelope_message(session, seq, body)))


def envelope_ok(key: PublicKey, env: Envelope) -> bool:
    if not 0 <= env.seq < 2**64:
        return False
    return key.verify(_envelope_message(env.session, env.seq, env.body), env.signature)
