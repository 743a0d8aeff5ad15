"""Signature verification speed: PyNaCl vs cryptography Ed25519, and RSA-2048.

All rates are measured in this one process, one after the other, on 32-byte messages
(a record id is what nodes verify), so their ratios are fair on any machine. Also times
signing, and fedledger's own ingest path for a signed Transaction arriving as bytes
(strict canonical decode + ``Verifier.check``: id computation and signature), the
figure a node's ingest rate is bounded by.

    .venv/bin/python benchmarks/signatures.py [--seconds 2] [--quick]

Other benchmarks can print their rates relative to this machine's signature speed with
``fedledger.crypto.verify_rate(scheme, seconds)``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from fedledger.codec import encode
from fedledger.crypto import KeyDirectory, KeyPair, verify_rate
from fedledger.crypto.bench import RATE_SCHEMES
from fedledger.ledger.records import ModelRef, Transaction, sign
from fedledger.ledger.verify import Verifier


def _per_second(fn: Callable[[], object], seconds: float) -> float:
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(50):
            fn()
        count += 50
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--quick", action="store_true", help="0.2 s per measurement")
    args = parser.parse_args()
    if args.quick:
        args.seconds = 0.2

    rates = {scheme: verify_rate(scheme, args.seconds) for scheme in RATE_SCHEMES}
    print(f"{'verify (32-byte message)':<34}{'per second':>12}{'vs ed25519':>12}")
    for scheme, rate in rates.items():
        print(f"{scheme:<34}{rate:>12,.0f}{rate / rates['ed25519']:>11.2f}x")
    ratio = rates["ed25519-pynacl"] / rates["ed25519-cryptography"]
    print(f"PyNaCl / cryptography Ed25519 verify: {ratio:.2f}x")

    msg = bytes(32)
    print(f"\n{'sign (32-byte message)':<34}{'per second':>12}")
    for scheme in ("ed25519", "rsa"):
        kp = KeyPair.generate(scheme)
        print(f"{scheme:<34}{_per_second(lambda kp=kp: kp.sign(msg), args.seconds):>12,.0f}")

    kp = KeyPair.generate("ed25519", bytes(32))
    tx = sign(Transaction(kp.address, 1.0, "model", ModelRef("bafk", bytes(32), 10)), kp)
    # no cache of valid signatures: the same transaction is checked over and over here
    verifier = Verifier(KeyDirectory([kp.public]), cache_size=0)
    data = encode(tx)
    rate = _per_second(lambda: verifier.check(verifier.decode(data, Transaction)), args.seconds)
    label = "decode + Verifier.check (tx)"
    print(f"\n{label:<34}{rate:>12,.0f}{rate / rates['ed25519']:>11.2f}x")


if __name__ == "__main__":
    main()
