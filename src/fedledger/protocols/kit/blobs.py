"""Model blobs: weights stored off chain as safetensors, named on chain by a ``ModelRef``.

:meth:`ModelBlobs.store` puts a model into the node's blob store and returns its
reference (content id, SHA-256 of the stored bytes, sample count); :meth:`ModelBlobs.check`
turns fetched bytes back into weights, verified against the reference (hash, encoding,
shape, finite values) or refused with a :class:`~fedledger.protocols.kit.gate.Reject`
naming why. An optional :class:`BlobCipher` encrypts a model before it is stored (and
hashed) and decrypts it after the hash check, for protocols that hide models in transit.
"""

from __future__ import annotations

import hashlib
from typing import Protocol as Interface

import numpy as np

from fedledger.errors import FedledgerError
from fedledger.learning.weights import Layout, from_safetensors, to_safetensors
from fedledger.ledger.records import ModelRef
from fedledger.protocols.kit.gate import Reject
from fedledger.storage.blobs import BlobStore

#: Reasons :meth:`ModelBlobs.check` refuses a blob with.
UNAVAILABLE = "model_unavailable"
BAD_HASH = "bad_model_hash"
MALFORMED = "malformed_model"
WRONG_MODEL = "wrong_model"

_SHARED_KEY = "fedledger.model_blobs"  # this class's entry in a shared blob's memo


class BlobCipher(Interface):
    """Encrypts a model's bytes before they are stored, decrypts them after fetching."""

    def encrypt(self, data: bytes) -> bytes: ...

    def decrypt(self, data: bytes) -> bytes: ...


class ModelBlobs:
    """A node's models in its blob store, all of the shape ``shape``."""

    def __init__(
        self, store: BlobStore, shape: tuple[int, ...], cipher: BlobCipher | None = None
    ) -> None:
        if len(shape) != 1 or shape[0] < 1:
            raise ValueError(f"model shape {shape}: a flat vector (n,) with n >= 1")
        self.store_ = store
        self.shape = tuple(int(n) for n in shape)
        self.layout = Layout((("weights", self.shape),))
        self.cipher = cipher

    def encode(self, weights: np.ndarray) -> bytes:
        """The bytes stored for ``weights`` (safetensors, encrypted if there is a cipher)."""
        data = to_safetensors(np.asarray(weights, dtype=np.float32), self.layout)
        return data if self.cipher is None else self.cipher.encrypt(data)

    def store(self, weights: np.ndarray, num_samples: int) -> ModelRef:
        """Put a model into the blob store; its reference for a transaction."""
        return self.put(self.encode(weights), num_samples)

    def put(self, data: bytes, num_samples: int) -> ModelRef:
        """Put already encoded bytes into the blob store; their reference."""
        cid = self.store_.put(data)
        return ModelRef(cid=cid, sha256=hashlib.sha256(data).digest(), num_samples=num_samples)

    def check(self, data: bytes | None, ref: ModelRef) -> np.ndarray:
        """The weights in ``data`` if they match ``ref`` and this model's shape and are
        finite; else raises :class:`Reject` (uncounted) with the reason.

        Bytes that carry a ``shared_memo`` (the simulator's one copy of a blob for every
        node, :mod:`fedledger.runtime.sim.blobshare`) are decoded once for all nodes:
        the weights are then shared and read-only (copy before changing them). Bytes
        are still hashed on every call; encrypted models are decoded per call."""
        if data is None:
            raise Reject(UNAVAILABLE, f"model {ref.cid} could not be fetched")
        if hashlib.sha256(data).digest() != ref.sha256:
            raise Reject(BAD_HASH, f"model {ref.cid} does not match its hash")
        memo: dict[object, np.ndarray] | None = (
            getattr(data, "shared_memo", None) if self.cipher is None else None
        )
        if memo is None:
            return self._decode(data, ref)
        key = (_SHARED_KEY, self.shape)
        shared = memo.get(key)
        if shared is None:
            shared = self._decode(data, ref)
            shared.setflags(write=False)
            memo[key] = shared
        return shared

    def _decode(self, data: bytes, ref: ModelRef) -> np.ndarray:
        try:
            plain = data if self.cipher is None else self.cipher.decrypt(data)
            weights, _ = from_safetensors(plain)
        except (FedledgerError, ValueError) as err:
            raise Reject(MALFORMED, f"model {ref.cid}: {err}") from None
        if weights.shape != self.shape or not np.isfinite(weights).all():
            raise Reject(WRONG_MODEL, f"model {ref.cid} has shape {weights.shape} or non-finite")
        return weights

    def load(self, data: bytes | None, ref: ModelRef) -> np.ndarray | None:
        """:meth:`check`, with None for a refused blob."""
        try:
            return self.check(data, ref)
        except Reject:
            return None

    def own(self, ref: ModelRef) -> np.ndarray | None:
        """The model ``ref`` from this node's own blob store, if it holds a good copy."""
        try:
            if not self.store_.has(ref.cid):
                return None
            return self.load(self.store_.get(ref.cid), ref)
        except (FedledgerError, ValueError, OSError):
            return None
