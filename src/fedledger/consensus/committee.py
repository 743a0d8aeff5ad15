"""Committee selection, written once for every protocol.

Three ways to pick who serves, each a pure function that every node evaluates to the
same answer:

- :func:`seeded_shuffle`, :func:`split_roles`, :func:`seeded_choice`: a permutation of
  the members (sorted first) by numpy's PCG64 seeded with
  ``derive_seed(seed, *label)``; public randomness, so anyone can predict it once the
  seed is known (PoS-BFL's per-round roles).
- :func:`sample_committee`: a fixed-size committee drawn with probability proportional
  to weight, without replacement, from the members' VRF outputs (Efraimidis and
  Spirakis, "Weighted random sampling with a reservoir", IPL 2006): member i gets the
  key ``u_i ** (1 / w_i)`` with u_i uniform in (0, 1] from its VRF output, and the k
  largest keys serve. The VRF makes u_i unpredictable before the member reveals its
  proof and impossible to choose, yet checkable by everyone.
- :func:`sortition`: Algorand's binomial sortition (Gilad et al., SOSP 2017): a member
  of weight w out of total W gets j seats, j the index of the interval of the binomial
  CDF of Binomial(w, tau / W) that holds its VRF output; the committee's size is tau in
  expectation, not fixed.

Exact arithmetic. Nothing here touches a float. A VRF output (64 bytes, RFC 9381) is
read as the integer h < 2**512 and u = (h + 1) / 2**512, a rational in (0, 1]; weights
are positive integers (scale stakes to integer units first). Comparing the
Efraimidis-Spirakis keys u_i ** (1/w_i) > u_j ** (1/w_j) is the same as comparing
x_i / w_i < x_j / w_j with x = -ln u, i.e. x_i * w_j < x_j * w_i. :func:`neg_log_fixed`
computes x in fixed point (integers only, so every node gets the same bits) with a
proven error below ``LOG_ERROR`` units in the last place; a comparison whose two sides
differ by more than the error bound is decided by it, and one that does not (keys equal
to about 2**-200 relative: only exact ties in practice) falls back to the exact integer
comparison a_i ** w_j * 2**(512 * w_i) against a_j ** w_i * 2**(512 * w_j) (a = h + 1).
The order is thus exactly the order of the rational keys, not an approximation. Exact
ties (which need equal keys) go to the smaller member id. Sortition compares h * d**w
with the binomial CDF numerators c(j) * 2**512, where p = n / d exactly and
c(j) = sum_{k <= j} C(w, k) n**k (d - n)**(w - k): integers of about w * log2(d) bits.

What a VRF committee guarantees: given honest VRF keys registered before the seed is
known, a member cannot bias its own draw, and the committee is a weighted random sample
of the members who published proofs. It does not guarantee that a minority of weight
stays a minority in the committee (that holds with high probability, by the binomial or
hypergeometric tail for the chosen size), and a member can always withhold its proof
(abstain), which is why the proofs to use are those on the ledger or in a certificate.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from fedledger.crypto.vrf import BETA_SIZE, VrfError, VrfKey, VrfPublicKey, verify
from fedledger.errors import FedledgerError
from fedledger.seeding import derive_seed

#: Bits of a VRF output; u = (h + 1) / 2**OUTPUT_BITS.
OUTPUT_BITS = 8 * BETA_SIZE
#: Fractional bits of :func:`neg_log_fixed` and the bound on its error, in units of
#: 2**-LOG_BITS (the proof is in its doc; tests check it against mpmath).
LOG_BITS = 256
LOG_ERROR = 4
_GUARD = 32
_ALPHA_DOMAIN = b"fedledger/committee/v1"


class CommitteeError(FedledgerError, ValueError):
    """A committee parameter or input is not usable; says which value and what is allowed."""


# ---------------------------------------------------------------- seeded shuffle


def seeded_shuffle(members: Sequence[str], seed: int, *label: str | int) -> tuple[str, ...]:
    """``members`` (sorted first) in the order of a permutation drawn by numpy's default
    generator seeded with ``derive_seed(seed, *label)``: the same on every node."""
    order = sorted(members)
    rng = np.random.default_rng(derive_seed(seed, *label))
    return tuple(order[i] for i in rng.permutation(len(order)))


def split_roles(
    members: Sequence[str], sizes: Sequence[int], seed: int, *label: str | int
) -> tuple[tuple[str, ...], ...]:
    """The shuffled members cut into consecutive groups of ``sizes`` (the last group takes
    the rest); each group sorted. PoS-BFL: (workers, validators, miners)."""
    if not sizes or any(s < 0 for s in sizes[:-1]) or sum(sizes[:-1]) > len(members):
        raise CommitteeError(
            f"group sizes {tuple(sizes)} do not fit {len(members)} members "
            "(need non-negative sizes whose sum without the last is at most the members)"
        )
    shuffled = seeded_shuffle(members, seed, *label)
    groups = []
    start = 0
    for size in sizes[:-1]:
        groups.append(tuple(sorted(shuffled[start : start + size])))
        start += size
    groups.append(tuple(sorted(shuffled[start:])))
    return tuple(groups)


def seeded_choice(options: Sequence[str], seed: int, *label: str | int) -> str:
    """One of ``options`` (in the given order), drawn with ``derive_seed(seed, *label)``."""
    if not options:
        raise CommitteeError("seeded_choice needs at least one option, got none")
    rng = np.random.default_rng(derive_seed(seed, *label))
    return options[int(rng.integers(len(options)))]


# ---------------------------------------------------------------- VRF tickets


def committee_alpha(seed: int | bytes, epoch: int, purpose: str) -> bytes:
    """The VRF input for one committee: domain, seed, epoch and purpose, length-prefixed."""
    seed_bytes = seed if isinstance(seed, bytes) else str(seed).encode()
    parts = (_ALPHA_DOMAIN, seed_bytes, str(epoch).encode(), purpose.encode())
    return b"".join(len(p).to_bytes(4, "big") + p for p in parts)


@dataclass(frozen=True)
class Ticket:
    """A member's VRF proof for a committee's alpha (80 bytes, RFC 9381)."""

    member: str
    proof: bytes


def make_ticket(member: str, key: VrfKey, alpha: bytes) -> Ticket:
    return Ticket(member, key.prove(alpha))


@dataclass(frozen=True)
class Committee:
    """A drawn committee: members by selection order (best first), seats per member
    (1 each for a fixed-size sample), and tickets refused with the reason."""

    members: tuple[str, ...]
    seats: tuple[int, ...]
    refused: tuple[tuple[str, str], ...] = ()

    @property
    def size(self) -> int:
        return sum(self.seats)

    def seats_of(self, member: str) -> int:
        return dict(zip(self.members, self.seats, strict=True)).get(member, 0)


def verified_outputs(
    tickets: Sequence[Ticket], keys: Mapping[str, VrfPublicKey], alpha: bytes
) -> tuple[dict[str, bytes], tuple[tuple[str, str], ...]]:
    """The VRF outputs of the tickets whose proofs verify under the member's registered
    key, and the refused ones as (member, reason). A second ticket of a member is refused."""
    outputs: dict[str, bytes] = {}
    refused: list[tuple[str, str]] = []
    for ticket in tickets:
        key = keys.get(ticket.member)
        if key is None:
            refused.append((ticket.member, "unknown member"))
        elif ticket.member in outputs:
            refused.append((ticket.member, "duplicate ticket"))
        else:
            try:
                outputs[ticket.member] = verify(key, ticket.proof, alpha)
            except VrfError as err:
                refused.append((ticket.member, f"bad proof: {err}"))
    return outputs, tuple(refused)


# ---------------------------------------------------------------- exact arithmetic


def _output_int(member: str, beta: bytes) -> int:
    """a = h + 1 in [1, 2**512] from a 64-byte VRF output."""
    if not isinstance(beta, bytes) or len(beta) != BETA_SIZE:
        raise CommitteeError(
            f"VRF output of {member!r} must be {BETA_SIZE} bytes, got {beta!r:.40}"
        )
    return int.from_bytes(beta, "big") + 1


def _weight(member: str, weight: object) -> int:
    if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
        raise CommitteeError(
            f"weight of {member!r} must be an int >= 0 (scale stakes to integer units), "
            f"got {weight!r}"
        )
    return weight


@functools.cache
def _ln2(bits: int) -> int:
    """ln 2 * 2**bits, within 2 units: ln 2 = 2 atanh(1/3)."""
    return _atanh_sum(_div_round(1 << bits, 3), bits)


def _div_round(a: int, b: int) -> int:
    return (2 * a + b) // (2 * b)


def _atanh_sum(z: int, bits: int) -> int:
    """2 * atanh(z / 2**bits) * 2**bits for 0 <= z <= 2**bits / 3; each of the terms is
    rounded to the nearest unit, so the error is at most one unit per term plus what
    the rounding of z**2 propagates (below one unit in all: z**2 <= 1/9)."""
    z2 = (z * z) >> bits
    term = z
    total = 0
    k = 1
    while term:
        total += _div_round(term, k)
        term = (term * z2) >> bits
        k += 2
    return 2 * total


def neg_log_fixed(a: int, bits: int = OUTPUT_BITS, precision: int = LOG_BITS) -> int:
    """-ln(a / 2**bits) * 2**precision for 1 <= a <= 2**bits, in integers only.

    a = m * 2**e with m in [1, 2), so -ln(a / 2**bits) = (bits - e) ln 2 - ln m, and
    ln m = 2 atanh((m - 1) / (m + 1)) with the argument below 1/3. The work is done with
    32 guard bits: the series has fewer than precision / 3 + 12 terms, each off by at
    most one guard-unit plus the propagated error of z (under a unit, as z <= 1/3 and the
    series sums to below 1), and ln 2 is off by at most ``precision / 3 + 12`` units times
    ``bits`` <= 512: far under 2**32 guard units, so the result is within
    ``LOG_ERROR`` units of the truth after rounding away the guard bits.
    """
    if isinstance(a, bool) or not isinstance(a, int) or not 1 <= a <= 1 << bits:
        raise CommitteeError(f"neg_log_fixed needs 1 <= a <= 2**{bits}, got {a!r}")
    work = precision + _GUARD
    e = a.bit_length() - 1
    # m = a / 2**e as a fixed-point number with `work` fractional bits
    m = a << work >> e if e <= work else a >> (e - work)
    one = 1 << work
    z = _div_round((m - one) << work, m + one)
    value = (bits - e) * _ln2(work) - _atanh_sum(z, work)
    return max(0, _div_round(value, 1 << _GUARD))


def _es_before(a_i: int, w_i: int, x_i: int, a_j: int, w_j: int, x_j: int) -> int:
    """-1 if key_i > key_j (i is selected before j), 1 if smaller, 0 if equal, where
    key = (a / 2**512) ** (1 / w) and x = neg_log_fixed(a)."""
    if a_i == a_j:
        if a_i == 1 << OUTPUT_BITS:
            return 0  # u = 1: the key is 1 whatever the weight
        return (w_j > w_i) - (w_j < w_i)  # larger weight, larger key (u < 1)
    lhs, rhs = x_i * w_j, x_j * w_i  # compare x_i / w_i with x_j / w_j
    margin = LOG_ERROR * (w_i + w_j)
    if lhs + margin < rhs:
        return -1
    if rhs + margin < lhs:
        return 1
    # keys within the error bound: decide exactly, u_i**w_j against u_j**w_i
    left = a_i**w_j << (OUTPUT_BITS * w_i)
    right = a_j**w_i << (OUTPUT_BITS * w_j)
    return (left < right) - (left > right)


# ---------------------------------------------------------------- sampling


def sample_committee(
    size: int, outputs: Mapping[str, bytes], weights: Mapping[str, int]
) -> Committee:
    """The ``size`` members with the largest Efraimidis-Spirakis keys (see the module
    doc), best first: a weighted sample without replacement. Members of weight 0 or
    without an output never serve; if fewer than ``size`` remain, all of them serve."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise CommitteeError(f"committee size must be an int >= 1, got {size!r}")
    entries = []
    for member in sorted(outputs):
        w = _weight(member, weights.get(member, 0))
        if w:
            a = _output_int(member, outputs[member])
            entries.append((member, a, w, neg_log_fixed(a)))

    def order(p: tuple[str, int, int, int], q: tuple[str, int, int, int]) -> int:
        c = _es_before(p[1], p[2], p[3], q[1], q[2], q[3])
        return c if c else (p[0] > q[0]) - (p[0] < q[0])

    chosen = sorted(entries, key=functools.cmp_to_key(order))[:size]
    return Committee(tuple(e[0] for e in chosen), (1,) * len(chosen))


def binomial_seats(beta: bytes, weight: int, total: int, expected: int | Fraction) -> int:
    """Algorand's seats for one member: the j with CDF(j-1) <= u < CDF(j) for
    Binomial(weight, expected / total), u = h / 2**512 exactly (module doc)."""
    w = _weight("member", weight)
    p = Fraction(expected) / total if total > 0 else Fraction(-1)
    if not 0 < p <= 1 or w > total:
        raise CommitteeError(
            f"sortition needs 0 < expected <= total and weight <= total, got expected "
            f"{expected!r}, total {total!r}, weight {weight!r}"
        )
    if w == 0 or p == 1:
        return w  # p == 1: every unit of weight is a seat
    h = _output_int("member", beta) - 1
    n, d = p.numerator, p.denominator
    goal = h * d**w  # u < CDF(j)  <=>  h * d**w < c(j) * 2**512
    term = (d - n) ** w  # C(w, 0) n**0 (d - n)**w
    cdf = 0
    for j in range(w):
        cdf += term
        if goal < cdf << OUTPUT_BITS:
            return j
        term = term * (w - j) * n // ((j + 1) * (d - n))
    return w


def sortition(
    expected: int | Fraction, outputs: Mapping[str, bytes], weights: Mapping[str, int]
) -> Committee:
    """Every member's seats by :func:`binomial_seats` over the total weight; the
    committee lists members with at least one seat, most seats first (then by id)."""
    total = sum(_weight(m, w) for m, w in weights.items())
    seats = {}
    for member in sorted(outputs):
        j = binomial_seats(outputs[member], weights.get(member, 0), total, expected)
        if j:
            seats[member] = j
    order = sorted(seats, key=lambda m: (-seats[m], m))
    return Committee(tuple(order), tuple(seats[m] for m in order))


def draw_committee(
    tickets: Sequence[Ticket],
    keys: Mapping[str, VrfPublicKey],
    weights: Mapping[str, int],
    alpha: bytes,
    size: int | None = None,
    expected: int | Fraction | None = None,
) -> Committee:
    """Verify every ticket, then :func:`sample_committee` (``size``) or
    :func:`sortition` (``expected``); refused tickets are listed in the result."""
    if (size is None) == (expected is None):
        raise CommitteeError(
            f"give exactly one of size (fixed-size sample) or expected (sortition), got "
            f"size={size!r}, expected={expected!r}"
        )
    outputs, refused = verified_outputs(tickets, keys, alpha)
    if size is not None:
        drawn = sample_committee(size, outputs, weights)
    else:
        assert expected is not None
        drawn = sortition(expected, outputs, weights)
    return Committee(drawn.members, drawn.seats, refused)
