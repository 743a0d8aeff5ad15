"""Paillier aggregation for Nagar, decrypted by a threshold committee (spec M6, M7).

Keys come from a trusted dealer at genesis (:func:`nagar_dealer`, derived from the experiment
seed like vanilla's: whoever knows the seed knows every share; it stands in for a dealer
process). The committee is the first ``encryption.committee`` miners in id order; holder
``i`` gets key share ``i``; ``t = encryption.threshold``.

A device clips and Laplace-noises its vector, then encrypts it (fixed point, packed,
weight 1) and stores the ciphertext blob by content id. The aggregate of a step is a
pure function of the chain: the included submissions of the step's block whose blobs
parse (:func:`parse_blob`), in block order, scaled by their plaintext weights
(:func:`weights_of`) and added. Committee members decrypt only that canonical aggregate,
and only under the rules of :class:`DecryptionGuard`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from fedledger.privacy.he.config import EncryptionSettings
from fedledger.privacy.he.dealer import SeededDealer
from fedledger.privacy.he.encoding import Layout, layout_for
from fedledger.privacy.he.errors import HeError
from fedledger.privacy.he.paillier import CipherVector, sum_vectors
from fedledger.privacy.he.threshold import ThresholdPublicKey
from fedledger.protocols.nagar.chainstate import Included
from fedledger.protocols.nagar.messages import GRAD, UPDATE

#: The committee's refusal reasons (counted in the member's gate).
SINGLE_UPDATE = "single_update"
UNDER_MIN_UPDATES = "under_min_updates"
REPEATED_DECRYPTION = "repeated_decryption"
NOT_CANONICAL = "not_canonical"


def nagar_dealer() -> SeededDealer:
    """Nagar's dealer at genesis: the committee's threshold key from the seed."""
    return SeededDealer("nagar-paillier-dealer")


def layout_of(s: EncryptionSettings) -> Layout:
    return layout_for(
        s.key_bits,
        frac_bits=s.frac_bits,
        clamp=s.clamp,
        max_weight=s.max_total_samples,
        packing=s.packing,
    )


def public_digest(pub: ThresholdPublicKey) -> bytes:
    """What the plan records of the committee key: SHA-256 of n, v and the v_i."""
    h = hashlib.sha256(b"fedledger/nagar/he-key")
    for value in (pub.n, pub.v, *pub.verification_keys):
        h.update(int(value).to_bytes((int(value).bit_length() + 7) // 8 + 1, "big"))
    return h.digest()


def weights_of(phase: str, weighted: bool, items: Sequence[Included]) -> list[int]:
    """The plaintext integer weights of the aggregate: n_k for gradient means and
    weighted updates, 1 for unweighted updates."""
    if phase == GRAD or (phase == UPDATE and weighted):
        return [i.sub.model.num_samples for i in items]
    return [1] * len(items)


def parse_blob(data: bytes, pub: ThresholdPublicKey, layout: Layout, length: int) -> CipherVector:
    """A device's ciphertext blob, refused (:class:`HeError`) unless it is a weight-1
    vector of ``length`` coordinates under the committee key and layout, every
    ciphertext a unit mod n**2."""
    vec = CipherVector.from_bytes(data)
    if vec.n != pub.n or vec.layout != layout or vec.weight != 1:
        raise HeError("cipher vector under another key, layout or weight")
    if vec.length != length:
        raise HeError(f"{vec.length} coordinates; the model has {length}")
    n2 = pub.n2
    for j, c in enumerate(vec.ciphertexts):
        if not 0 < c < n2 or c % pub.n == 0:
            raise HeError(f"ciphertext {j} is not a unit mod n**2")
    return vec


def aggregate(vecs: Sequence[CipherVector], weights: Sequence[int]) -> CipherVector:
    return sum_vectors(list(vecs), list(weights))


def aggregate_id(plan_id: bytes, step: int, phase: str, vec: CipherVector) -> bytes:
    """Names an aggregate: the (plan, step, phase) it is for and its ciphertexts."""
    h = hashlib.sha256(b"fedledger/nagar/aggregate")
    h.update(plan_id + step.to_bytes(8, "big") + phase.encode())
    h.update(vec.to_bytes())
    return h.digest()


@dataclass
class DecryptionGuard:
    """A committee member's rules: decrypt only the canonical aggregate of a (plan,
    step, phase), at most one aggregate per key, and only a sum of at least
    ``max(2, min_updates)`` devices (never a single update)."""

    min_updates: int
    done: dict[tuple[bytes, int, str], bytes] = field(default_factory=dict)

    def refusal(
        self,
        key: tuple[bytes, int, str],
        agg: bytes,
        canonical: bytes | None,
        count: int,
    ) -> str | None:
        """Why the member refuses to decrypt aggregate ``agg`` of ``count`` devices for
        ``key`` (None: it may); ``canonical`` is the chain's aggregate id for ``key``."""
        if canonical is None or agg != canonical:
            return NOT_CANONICAL
        if count <= 1:
            return SINGLE_UPDATE
        if count < self.min_updates:
            return UNDER_MIN_UPDATES
        previous = self.done.get(key)
        if previous is not None and previous != agg:
            return REPEATED_DECRYPTION
        return None

    def record(self, key: tuple[bytes, int, str], agg: bytes) -> bool:
        """Note a decryption; whether it is new (False: the same aggregate again, whose
        partial is republished, not a second decryption)."""
        new = key not in self.done
        self.done[key] = agg
        return new
