"""CKKS vectors through TenSEAL (approximate arithmetic on long float vectors).

One key holder owns the secret key; everyone else gets the public context (no secret
key, no Galois keys: additions and plaintext scalings need none). TenSEAL chunks a long
vector into as many ciphertexts as it needs (``poly_modulus_degree / 2`` slots each).
Its encryption randomness comes from SEAL's own generator: ciphertexts (not the
decrypted sums, up to CKKS noise) differ between runs. Trust model: weaker than
threshold Paillier; the single key holder, colluding with the server, can decrypt any
client's update.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fedledger.privacy.he.errors import HeError

try:  # optional: TenSEAL publishes wheels for CPython 3.8 to 3.11 on x86-64
    import tenseal as ts
except ImportError as exc:  # pragma: no cover - depends on the platform
    ts = None
    _IMPORT_ERROR: ImportError | None = exc
else:
    _IMPORT_ERROR = None


def require_tenseal() -> Any:
    if ts is None:
        raise HeError(
            f"scheme 'ckks' needs TenSEAL (pip install tenseal), which is not importable "
            f"here: {_IMPORT_ERROR}"
        )
    return ts


@dataclass(frozen=True)
class CkksKeys:
    """The serialized contexts: ``public`` for everyone, ``secret`` for the key holder."""

    public: bytes
    secret: bytes


def make_keys(poly_modulus_degree: int = 8192, scale_bits: int = 40) -> CkksKeys:
    """Fresh CKKS keys (SEAL's randomness: not reproducible from a seed)."""
    tenseal = require_tenseal()
    outer = min(60, scale_bits + 20)
    ctx = tenseal.context(
        tenseal.SCHEME_TYPE.CKKS,
        poly_modulus_degree=poly_modulus_degree,
        coeff_mod_bit_sizes=[outer, scale_bits, outer],
    )
    ctx.global_scale = 2.0**scale_bits
    secret = ctx.serialize(save_secret_key=True)
    ctx.make_context_public()
    return CkksKeys(public=ctx.serialize(), secret=secret)


def load_context(data: bytes) -> Any:
    return require_tenseal().context_from(data)


def encrypt(context: Any, x: np.ndarray) -> bytes:
    """The serialized CKKS vector of ``x`` (flattened)."""
    arr = np.asarray(x, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(arr)):
        raise HeError("CKKS input has NaN or infinite coordinates; allowed: finite")
    return bytes(require_tenseal().ckks_vector(context, arr.tolist()).serialize())


def load_vector(context: Any, data: bytes) -> Any:
    try:
        return require_tenseal().ckks_vector_from(context, bytes(data))
    except Exception as exc:  # TenSEAL raises plain ValueError / RuntimeError
        raise HeError(f"not a CKKS vector for this context: {exc}") from exc


def add_all(context: Any, blobs: list[bytes]) -> bytes:
    """The serialized sum of serialized CKKS vectors (all of one length)."""
    if not blobs:
        raise HeError("cannot sum an empty list of CKKS vectors")
    vecs = [load_vector(context, b) for b in blobs]
    sizes = {v.size() for v in vecs}
    if len(sizes) != 1:
        raise HeError(f"CKKS vectors of lengths {sorted(sizes)}; all must match")
    total = vecs[0]
    for v in vecs[1:]:
        total = total + v
    return bytes(total.serialize())


def decrypt(secret_context: Any, data: bytes) -> np.ndarray:
    """The float64 plaintext of a serialized CKKS vector (needs the secret key)."""
    if not secret_context.has_secret_key():
        raise HeError("this CKKS context has no secret key; only the key holder decrypts")
    return np.asarray(load_vector(secret_context, data).decrypt(), dtype=np.float64)
