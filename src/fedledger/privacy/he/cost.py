"""How long homomorphic work takes: a cost model, so that it can cost virtual time.

The simulator charges training by the sample; homomorphic encryption deserves the same
(a 2048-bit Paillier encryption of the 431k-parameter CNN takes about 5 s). A protocol
declares each piece of HE work as the seconds it would take on the reference machine
(``meter.work("crypto", seconds)``); the simulator delays the effects of the handler that
did it (:mod:`fedledger.protocols.meter`). The costs are per ciphertext, a pure function
of the operation, the ciphertext count and the key size, so runs stay reproducible.

Reference figures: ``benchmarks/he_cost.py --quick`` on the project's 2-core x86_64
machine (CPU seconds, one core), per ciphertext, at 1024- and 2048-bit keys. Other key
sizes follow the power law through the two points (modular exponentiation cost grows
between the square and the cube of the modulus size; the fitted exponents are 1.4 to
2.7). CKKS (TenSEAL, poly_modulus_degree 8192, 4096 slots per ciphertext): per
ciphertext, from the same run at 431,080 parameters (106 ciphertexts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fedledger.privacy.he.errors import HeError


@dataclass(frozen=True)
class OpCost:
    """Seconds per ciphertext at 1024- and 2048-bit keys."""

    at_1024: float
    at_2048: float

    def seconds(self, key_bits: int) -> float:
        exponent = math.log2(self.at_2048 / self.at_1024)
        return self.at_2048 * (key_bits / 2048) ** exponent


#: Paillier, per ciphertext (packed or not: the cost is per ciphertext). ``encrypt`` is
#: the DJN fixed-base encryption; ``scale`` a multiplication by a small plaintext weight;
#: ``partial`` one holder's partial decryption with its proof; ``verify`` the check of
#: one partial's proof; ``combine`` the Lagrange combination of t partials.
PAILLIER_COSTS: dict[str, OpCost] = {
    "encrypt": OpCost(1.29e-4, 6.95e-4),
    "add": OpCost(1.47e-6, 4.03e-6),
    "scale": OpCost(1.60e-5, 5.74e-5),
    "decrypt": OpCost(3.99e-4, 2.65e-3),
    "partial": OpCost(3.72e-3, 2.43e-2),
    "verify": OpCost(1.38e-3, 6.63e-3),
    "combine": OpCost(5.10e-5, 1.22e-4),
}

#: CKKS, per 4096-slot ciphertext (poly_modulus_degree 8192, scale 2**40).
CKKS_COSTS: dict[str, float] = {"encrypt": 1.32e-2, "add": 6.1e-4, "decrypt": 2.76e-3}
CKKS_SLOTS = 4096


def paillier_seconds(op: str, ciphertexts: int, key_bits: int) -> float:
    """Modelled seconds of ``op`` on ``ciphertexts`` Paillier ciphertexts."""
    cost = PAILLIER_COSTS.get(op)
    if cost is None:
        raise HeError(f"unknown Paillier operation {op!r}; allowed: {', '.join(PAILLIER_COSTS)}")
    if ciphertexts < 0 or key_bits < 256:
        raise HeError(
            f"ciphertexts={ciphertexts}, key_bits={key_bits}; need ciphertexts >= 0 and "
            "key_bits >= 256"
        )
    return ciphertexts * cost.seconds(key_bits)


def ckks_seconds(op: str, values: int) -> float:
    """Modelled seconds of ``op`` on a CKKS vector of ``values`` real numbers."""
    cost = CKKS_COSTS.get(op)
    if cost is None:
        raise HeError(f"unknown CKKS operation {op!r}; allowed: {', '.join(CKKS_COSTS)}")
    if values < 0:
        raise HeError(f"values={values}; need >= 0")
    return -(-values // CKKS_SLOTS) * cost
