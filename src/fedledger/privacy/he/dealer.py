"""The trusted dealer at genesis, as a simulation or a localnet stands it in.

Every node derives the same keys from the experiment seed under the protocol's own
domain string, so no key material travels; whoever knows the seed holds every key share
(protocols say so in their docs). Keys are dealt once per dealer object and reused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fedledger.privacy.he import ckks
from fedledger.privacy.he.config import EncryptionSettings
from fedledger.privacy.he.paillier import Encryptor
from fedledger.privacy.he.rand import SeededRandom
from fedledger.privacy.he.threshold import KeyShare, ThresholdPublicKey, deal
from fedledger.seeding import derive_seed


@dataclass
class SeededDealer:
    """Threshold Paillier and CKKS keys derived from the seed under ``domain``."""

    domain: str
    _cache: dict[tuple[Any, ...], Any] = field(default_factory=dict)

    def paillier(
        self, seed: int, s: EncryptionSettings
    ) -> tuple[ThresholdPublicKey, tuple[KeyShare, ...], Encryptor]:
        """The joint public key, the t-of-m key shares and an encryptor."""
        key = ("paillier", seed, s.key_bits, s.threshold, s.committee)
        if key not in self._cache:
            rng = SeededRandom(derive_seed(seed, self.domain), "dealer")
            pub, shares = deal(s.key_bits, s.threshold, s.committee, rng)
            self._cache[key] = (pub, shares, Encryptor(pub.phe()))
        return self._cache[key]  # type: ignore[no-any-return]

    def ckks(self, seed: int, s: EncryptionSettings) -> ckks.CkksKeys:
        """One key holder's CKKS keys (SEAL draws its own randomness)."""
        key = ("ckks", seed, s.poly_modulus_degree, s.scale_bits)
        if key not in self._cache:
            self._cache[key] = ckks.make_keys(s.poly_modulus_degree, s.scale_bits)
        return self._cache[key]  # type: ignore[no-any-return]
