"""Paillier cost: encrypt, add, scalar-multiply, (threshold) decrypt and ciphertext bytes.

For model sizes of 650 (softmax regression on digits), 4.8k and 431,080 (the muDFL CNN)
parameters, 1024- and 2048-bit keys (``--keys`` for more), packing on (as many slots as
fit, the narrowest slot width that passes the headroom check) and off (one coordinate
per ciphertext). Times are CPU seconds of this process (one core: nothing here is
multi-threaded) for the whole vector. Where a row would take too long to run in full
(``--cap`` ciphertexts per operation; naive per-coordinate Paillier at 431k, threshold
decryption at 431k) the time is measured on the first ``cap`` ciphertexts and
extrapolated linearly; such figures are marked ``~``.

Encryption: ``djn`` is the default (fixed-base ``hs**alpha``, ``alpha`` of k/2 bits);
``std`` is textbook ``r**n`` (phe's ``raw_encrypt``). Threshold: t=2 of m=3 holders;
"partial" is one holder's partial decryption with its proof, "verify" one partial's
proof check, "combine" the Lagrange combination of t partials.

CKKS (TenSEAL, poly_modulus_degree 8192, scale 2**40, one thread): encrypt, add two
vectors, decrypt, serialized bytes, wall seconds per whole vector (TenSEAL chunks a long
vector into 4096-slot ciphertexts). Skipped with a note if TenSEAL is not installed.

    .venv/bin/python benchmarks/he_cost.py [--quick] [--keys 1024 2048 3072] [--cap N]
        [--schemes paillier ckks]

Goals (issue 14): the 431k CNN encrypted with packing in <= 5 s on one core (Paillier);
CKKS encrypt <= 0.5 s and add <= 25 ms at 431k.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import gmpy2
import numpy as np
from gmpy2 import mpz
from phe import PaillierPrivateKey

from fedledger.privacy.he.encoding import Layout, layout_for, pack
from fedledger.privacy.he.paillier import Encryptor
from fedledger.privacy.he.primes import safe_prime
from fedledger.privacy.he.rand import SeededRandom
from fedledger.privacy.he.threshold import (
    KeyShare,
    ThresholdPublicKey,
    combine,
    deal_from_primes,
    partial_decrypt,
    verify_partial,
)

SIZES = (650, 4_800, 431_080)
FRAC_BITS, CLAMP, MAX_WEIGHT, WEIGHT = 24, 1.0, 1024, 600


def _cpu(fn: Callable[[], object]) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def _per_item(fn: Callable[[Sequence], object], items: Sequence, cap: int) -> tuple[float, bool]:
    """CPU seconds of ``fn`` over all items, measured on at most ``cap`` and scaled."""
    k = min(cap, len(items))
    secs = _cpu(lambda: fn(items[:k]))
    return secs * len(items) / k, k < len(items)


def _fmt(value: tuple[float, bool]) -> str:
    secs, extrapolated = value
    text = f"{secs:.3g}" if secs < 100 else f"{secs:,.0f}"
    return ("~" if extrapolated else "") + text


@dataclass
class _Key:
    bits: int
    pub: ThresholdPublicKey
    shares: tuple[KeyShare, ...]
    sk: PaillierPrivateKey
    djn: Encryptor
    std: Encryptor


def _row(key: _Key, lay: Layout, x: np.ndarray, caps: tuple[int, int, int], rng) -> str:
    cap, std_cap, thr_cap = caps
    pub, n2 = key.pub, mpz(key.pub.n) ** 2
    plain = pack(x, lay)
    count = len(plain)
    enc_djn = _per_item(lambda ms: [key.djn.encrypt_int(m, rng) for m in ms], plain, cap)
    enc_std = _per_item(lambda ms: [key.std.encrypt_int(m, rng) for m in ms], plain, std_cap)
    sample = [key.djn.encrypt_int(m, rng) for m in plain[: min(cap, count)]]
    cts = sample * (count // len(sample)) + sample[: count % len(sample)]
    add = _per_item(lambda cs: [c * c % n2 for c in cs], cts, cap)
    smul = _per_item(lambda cs: [gmpy2.powmod(c, WEIGHT, n2) for c in cs], cts, cap)
    dec = _per_item(lambda cs: [key.sk.raw_decrypt(int(c)) for c in cs], cts, cap)
    part = _per_item(lambda cs: partial_decrypt(pub, key.shares[0], cs, rng), cts, thr_cap)
    k = min(thr_cap, count)
    parts = [partial_decrypt(pub, s, cts[:k], rng) for s in key.shares[:2]]
    ver = (_cpu(lambda: verify_partial(pub, cts[:k], parts[0])) * count / k, k < count)
    comb = (_cpu(lambda: combine(pub, cts[:k], parts, verify=False)) * count / k, k < count)
    nbytes = (key.bits + 7) // 8
    size_mb = (5 + 2 + nbytes + 41 + count * 2 * nbytes) / 1e6
    return (
        f"{key.bits:>5} {lay.slots:>4} {x.size:>8,} {lay.slot_bits:>4} {count:>7,} "
        f"{_fmt(enc_djn):>8} {_fmt(enc_std):>8} {_fmt(add):>7} {_fmt(smul):>7} "
        f"{_fmt(dec):>8} {_fmt(part):>8} {_fmt(ver):>7} {_fmt(comb):>8} {size_mb:>7.2f}"
    )


def _calibrate(bits: int, rng: SeededRandom) -> float:
    """Microseconds (CPU) of one multiplication mod n**2 for a ``bits``-bit n."""
    mod = mpz(rng.randbits(2 * bits) | (1 << (2 * bits - 1)) | 1)
    a, b = mpz(rng.randbelow(int(mod))), mpz(rng.randbelow(int(mod)))
    return _cpu(lambda: [a * b % mod for _ in range(20_000)]) / 20_000 * 1e6


def _ckks_table(vectors: Sequence[np.ndarray], repeats: int) -> None:
    try:
        import tenseal as ts
    except ImportError as exc:
        print(f"\nCKKS skipped: TenSEAL is not importable ({exc})")
        return
    ctx = ts.context(
        ts.SCHEME_TYPE.CKKS, poly_modulus_degree=8192, coeff_mod_bit_sizes=[60, 40, 60],
        n_threads=1,
    )  # fmt: skip
    ctx.global_scale = 2.0**40

    def wall(fn: Callable[[], object]) -> float:
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
        return best

    print("\nCKKS (TenSEAL, N=8192, scale 2**40, 1 thread): best of", repeats, "wall seconds")
    print(f"{'params':>8} {'encrypt':>8} {'add':>8} {'decrypt':>8} {'MB':>7} {'max err':>9}")
    for x in vectors:
        values = x.astype(np.float64).tolist()
        enc = wall(lambda v=values: ts.ckks_vector(ctx, v))
        a, b = ts.ckks_vector(ctx, values), ts.ckks_vector(ctx, values)
        add = wall(lambda a=a, b=b: a + b)
        dec = wall(lambda a=a: a.decrypt())
        err = float(np.max(np.abs(np.asarray((a + b).decrypt()) - 2 * x.astype(np.float64))))
        size_mb = len(a.serialize()) / 1e6
        print(f"{x.size:>8,} {enc:>8.3f} {add:>8.4f} {dec:>8.3f} {size_mb:>7.2f} {err:>9.1e}")
    print("goal: 431k, CKKS encrypt <= 0.5 s and add <= 25 ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small caps, 431k extrapolated")
    parser.add_argument("--keys", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--cap", type=int, default=None, help="ciphertexts measured per op")
    parser.add_argument("--schemes", nargs="+", default=["paillier", "ckks"],
                        choices=["paillier", "ckks"])  # fmt: skip
    args = parser.parse_args()
    cap = args.cap or (200 if args.quick else 20_000)
    caps = (cap, min(cap, 50 if args.quick else 500), 8 if args.quick else 40)
    rng = SeededRandom("he-cost")
    gen = np.random.default_rng(0)
    vectors = [gen.normal(scale=0.3, size=size).astype(np.float32) for size in SIZES]

    if "ckks" in args.schemes:
        _ckks_table(vectors, 1 if args.quick else 3)
    if "paillier" not in args.schemes:
        return
    head = (
        f"{'key':>5} {'/ct':>4} {'params':>8} {'slot':>4} {'cts':>7} {'enc djn':>8} "
        f"{'enc std':>8} {'add':>7} {'smul':>7} {'decrypt':>8} {'partial':>8} "
        f"{'verify':>7} {'combine':>8} {'MB':>7}"
    )
    print(
        f"fixed point: frac_bits={FRAC_BITS}, clamp={CLAMP}, max_weight={MAX_WEIGHT}; "
        f"scalar={WEIGHT}; /ct = coordinates per ciphertext (1 = packing off);\n"
        f"CPU seconds per whole vector; ~ = extrapolated from the first "
        f"{caps[0]} (enc std: {caps[1]}; threshold: {caps[2]}) ciphertexts"
    )
    for bits in args.keys:
        t0 = time.perf_counter()
        p = safe_prime(bits // 2, rng)
        q = safe_prime(bits // 2, rng)
        pub, shares = deal_from_primes(p, q, 2, 3, rng)
        deal_s = time.perf_counter() - t0
        key = _Key(bits, pub, shares, PaillierPrivateKey(pub.phe(), p, q),
                   Encryptor(pub.phe(), "djn"), Encryptor(pub.phe(), "standard"))
        table_s = _cpu(lambda k=key: k.djn.obfuscator(SeededRandom(0)))  # builds the table
        print(
            f"\n{bits}-bit key: safe primes + deal (t=2, m=3) {deal_s:.1f} s wall; DJN table "
            f"{table_s:.2f} s CPU; one mulmod n**2 {_calibrate(bits, rng):.2f} us CPU"
        )
        print(head)
        for packing in (True, False):
            lay = layout_for(bits, frac_bits=FRAC_BITS, clamp=CLAMP, max_weight=MAX_WEIGHT,
                             packing=packing)  # fmt: skip
            for x in vectors:
                print(_row(key, lay, x, caps, rng), flush=True)
    print(
        "\ngoal: 431k CNN, Paillier with packing, encrypt <= 5 s on one core "
        "(rows with /ct > 1 at 431,080, column 'enc djn')"
    )


if __name__ == "__main__":
    main()
