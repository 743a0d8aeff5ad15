"""The ``protocol.encryption`` block: additively homomorphic aggregation settings."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class EncryptionSettings(BaseModel):
    """Clients encrypt, the server only adds, a committee (or one key holder) decrypts.

    scheme: "paillier" (exact fixed-point sums, t-of-m threshold decryption with
        proofs) or "ckks" (TenSEAL; approximate, fast for long vectors, one key holder).
    key_bits: Paillier modulus size (2048 for real use; smaller only in tests).
    threshold, committee: t of the m committee members (the first m clients in id
        order; the only key holder under CKKS is the first) must decrypt.
    frac_bits, clamp, packing, max_total_samples: Paillier's fixed-point layout; the
        slots are wide enough for a sum of total weight max_total_samples.
    poly_modulus_degree, scale_bits: CKKS parameters (TenSEAL).
    phase_timeout: virtual seconds the server waits for partial decryptions.
    randomness: "seeded" (simulator: the dealer's key and every encryption derive from
        the experiment seed) or "os" (encryption randomness from the OS; the dealt key
        still derives from the seed, standing in for a dealer at genesis).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    scheme: Literal["paillier", "ckks"]
    key_bits: int = Field(2048, ge=128)
    threshold: int = Field(2, ge=1)
    committee: int = Field(3, ge=1)
    frac_bits: int = Field(16, ge=0, le=40)
    clamp: float = Field(8.0, gt=0.0)
    packing: bool = True
    max_total_samples: int = Field(100_000, ge=1)
    poly_modulus_degree: int = Field(8192, ge=4096)
    scale_bits: int = Field(40, ge=20, le=60)
    phase_timeout: float = Field(60.0, gt=0.0)
    randomness: Literal["seeded", "os"] = "seeded"

    @model_validator(mode="after")
    def _threshold_in_committee(self) -> EncryptionSettings:
        if self.threshold > self.committee:
            raise ValueError(
                f"encryption.threshold={self.threshold} exceeds committee={self.committee}; "
                f"allowed: 1 <= threshold <= committee"
            )
        if self.key_bits % 2:
            raise ValueError(f"encryption.key_bits={self.key_bits}; allowed: an even number")
        return self
