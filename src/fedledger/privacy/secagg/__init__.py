"""Secure aggregation (Bonawitz et al., CCS 2017), sans-IO: the server learns only a sum.

- ``ring``: fixed-point encoding of (sample-weighted) float vectors into Z_{2**64};
- ``prg``: mask expansion from 32-byte seeds (ChaCha20);
- ``shares``: X25519 key agreement, Shamir shares of secrets encrypted to each recipient,
  and robust reconstruction that names bad shares;
- ``client`` / ``server``: the four rounds (advertise keys, share keys, masked input,
  unmasking) as plain state objects that take and return values, never do I/O.
"""

from fedledger.privacy.secagg.client import SecAggClient
from fedledger.privacy.secagg.errors import DropoutError, SecAggError, TamperedShareError
from fedledger.privacy.secagg.ring import RingCodec
from fedledger.privacy.secagg.server import SecAggServer

__all__ = [
    "DropoutError",
    "RingCodec",
    "SecAggClient",
    "SecAggError",
    "SecAggServer",
    "TamperedShareError",
]
