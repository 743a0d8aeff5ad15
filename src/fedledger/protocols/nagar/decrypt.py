"""A Nagar node's encrypted side (sans-IO): encryption on devices, the committee
member's guarded partial decryption, and collecting, verifying and combining partials.

Every node computes a step's aggregate from the chain alone (:meth:`Decryption.aggregate`:
the block's submissions whose ciphertext blobs are well formed, weighted by
:func:`~fedledger.protocols.nagar.secure.weights_of`); a member publishes one partial
decryption of it (with its proof) and republishes the same bytes when asked again; a
device combines the first ``t`` partials whose proofs hold. Refusals are counted in the
node's gate: ``bad_ciphertext`` (a blob in a block that does not parse; it is left out
of the aggregate by every node alike), ``invalid_partial`` (a forged partial or proof),
``not_a_key_holder`` and the committee's ``single_update``, ``under_min_updates``,
``repeated_decryption``, ``not_canonical``.

Every piece of homomorphic work is declared to the node's meter (``meter.work("crypto",
seconds)``, the per-ciphertext model of :mod:`fedledger.privacy.he.cost`), so the
simulator charges it virtual time (``compute.work_scale``): a device's encryption, the
aggregate's scaling and additions on every node that computes it, a member's partial
decryption, and a device's proof checks and combination.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from fedledger.privacy.he.cost import paillier_seconds
from fedledger.privacy.he.dealer import SeededDealer
from fedledger.privacy.he.encoding import decode_sum
from fedledger.privacy.he.errors import HeError
from fedledger.privacy.he.paillier import CipherVector, encrypt_vector
from fedledger.privacy.he.rand import SeededRandom
from fedledger.privacy.he.threshold import (
    PartialDecryption,
    combine,
    partial_decrypt_vector,
    verify_partial,
)
from fedledger.protocols.kit.gate import Gate
from fedledger.protocols.meter import NULL_METER, Meter
from fedledger.protocols.nagar.chainstate import Included
from fedledger.protocols.nagar.params import NagarParams
from fedledger.protocols.nagar.secure import (
    DecryptionGuard,
    aggregate,
    aggregate_id,
    layout_of,
    parse_blob,
    public_digest,
    weights_of,
)
from fedledger.seeding import derive_seed

WRONG_PARTIAL = "wrong_partial"  # fault: a committee member that lies about its partial


@dataclass(frozen=True)
class Aggregate:
    """The canonical aggregate of a step: included items, their ciphertext sum and id."""

    phase: str
    items: tuple[Included, ...]
    vec: CipherVector | None  # None: no well-formed ciphertext in the block
    agg_id: bytes


class Decryption:
    def __init__(
        self,
        params: NagarParams,
        dealer: SeededDealer,
        seed: int,
        node_id: str,
        committee: Sequence[str],
        gate: Gate,
        length: int,
        faults: Sequence[str] = (),
        meter: Meter = NULL_METER,
    ) -> None:
        settings = params.encryption
        assert settings is not None
        self.params = params
        self.meter = meter
        self.key_bits = settings.key_bits
        self.pub, shares, self.encryptor = dealer.paillier(seed, settings)
        self.layout = layout_of(settings)
        self.committee = tuple(committee)
        self.index = self.committee.index(node_id) + 1 if node_id in self.committee else 0
        self.share = shares[self.index - 1] if self.index else None
        self.seed, self.node_id, self.gate, self.length = seed, node_id, gate, length
        self.lying = WRONG_PARTIAL in faults
        self.guard = DecryptionGuard(max(2, params.min_updates))
        self.digest = public_digest(self.pub)
        self.aggs: dict[int, Aggregate] = {}
        self.received: dict[int, dict[int, PartialDecryption]] = {}
        self.totals: dict[int, np.ndarray] = {}
        self.published: dict[int, bytes] = {}
        self.checked: dict[int, set[int]] = {}  # step -> holders whose proof held

    # ------------------------------------------------------------ device: encrypt

    def _work(self, op: str, ciphertexts: int) -> None:
        """Declare ``op`` on ``ciphertexts`` ciphertexts (modelled seconds)."""
        if ciphertexts > 0:
            self.meter.work("crypto", paillier_seconds(op, ciphertexts, self.key_bits))

    def encrypt(self, vec: np.ndarray, step: int) -> bytes:
        rng = SeededRandom(derive_seed(self.seed, "nagar-encrypt", self.node_id, step), "enc")
        with self.meter.section("crypto"):
            out = encrypt_vector(self.encryptor, vec, self.layout, rng)
        self._work("encrypt", len(out.ciphertexts))
        return out.to_bytes()

    # ------------------------------------------------------------ every node: the aggregate

    def aggregate(
        self,
        plan_id: bytes,
        step: int,
        phase: str,
        items: Sequence[Included],
        blobs: dict[str, bytes],
    ) -> Aggregate:
        """The canonical aggregate of ``step`` from its block's items and fetched blobs."""
        known = self.aggs.get(step)
        if known is not None:
            return known
        good: list[Included] = []
        vecs: list[CipherVector] = []
        for item in items:
            data = blobs.get(item.sub.model.cid)
            if data is None:
                self.gate.fail("bad_ciphertext", f"blob {item.sub.model.cid} unavailable")
                continue
            try:
                vecs.append(parse_blob(data, self.pub, self.layout, self.length))
            except HeError as err:
                self.gate.fail("bad_ciphertext", f"blob {item.sub.model.cid}: {err}")
                continue
            good.append(item)
        vec = None
        agg_id = b""
        if vecs:
            weighted = self.params.weighted or self.params.optimizer == "fedavg"
            try:
                with self.meter.section("crypto"):
                    vec = aggregate(vecs, weights_of(phase, weighted, good))
                cts = len(vec.ciphertexts)
                self._work("scale", cts * len(vecs))
                self._work("add", cts * (len(vecs) - 1))
                agg_id = aggregate_id(plan_id, step, phase, vec)
            except HeError as err:  # headroom: more samples than the layout allows
                self.gate.fail("bad_ciphertext", f"aggregate of step {step}: {err}")
                vec, good = None, []
        out = Aggregate(phase, tuple(good), vec, agg_id)
        self.aggs[step] = out
        return out

    # ------------------------------------------------------------ member: decrypt

    def decrypt(self, plan_id: bytes, step: int, agg: Aggregate, asked: bytes) -> bytes | None:
        """This member's partial decryption of aggregate ``asked`` for ``step`` (bytes
        to publish), or None after counting the refusal. Only the canonical ``agg`` of
        at least max(2, min_updates) devices is decrypted, one aggregate per step."""
        if self.share is None:
            self.gate.fail("not_a_key_holder", f"{self.node_id} holds no key share")
            return None
        key = (plan_id, step, agg.phase)
        canonical = agg.agg_id if agg.vec is not None else None
        why = self.guard.refusal(key, asked, canonical, len(agg.items))
        if why is not None:
            self.gate.fail(why, f"step {step}: {len(agg.items)} devices")
            return None
        if not self.guard.record(key, asked) and step in self.published:
            return self.published[step]
        assert agg.vec is not None
        rng = SeededRandom(derive_seed(self.seed, "nagar-partial", self.node_id, step), "pd")
        with self.meter.section("crypto"):
            part = partial_decrypt_vector(self.pub, self.share, agg.vec, rng)
        self._work("partial", len(agg.vec.ciphertexts))
        if self.lying:
            n2 = self.pub.n2
            part = PartialDecryption(
                part.index, (part.values[0] * self.pub.v % n2, *part.values[1:]), part.proof
            )
        blob = part.to_bytes(self.pub.n)
        self.published[step] = blob
        return blob

    # ------------------------------------------------------------ device: combine

    def receive(self, step: int, sender: str, blob: bytes) -> None:
        """A published partial for ``step`` from ``sender`` (checked when combining)."""
        if sender not in self.committee:
            raise self.gate.fail("not_a_key_holder", f"partial from {sender}")
        try:
            part = PartialDecryption.from_bytes(blob, self.pub.n)
        except HeError as err:
            raise self.gate.fail("invalid_partial", f"{sender}: {err}") from err
        if part.index != self.committee.index(sender) + 1:
            raise self.gate.fail("invalid_partial", f"{sender} claims holder {part.index}")
        self.received.setdefault(step, {}).setdefault(part.index, part)

    def total(self, step: int) -> np.ndarray | None:
        """The decrypted weighted total of ``step`` once ``t`` verified partials are in."""
        if step in self.totals:
            return self.totals[step]
        agg = self.aggs.get(step)
        if agg is None or agg.vec is None:
            return None
        parts = self.received.get(step, {})
        cts = agg.vec.ciphertexts
        checked = self.checked.setdefault(step, set())
        for index in sorted(parts):
            if index in checked:
                continue
            with self.meter.section("crypto"):
                ok = verify_partial(self.pub, cts, parts[index])
            self._work("verify", len(cts))
            if not ok:
                self.gate.fail("invalid_partial", f"holder {index}: proof failed at step {step}")
                del parts[index]
            else:
                checked.add(index)
        if len(parts) < self.pub.t:
            return None
        with self.meter.section("crypto"):
            plain = combine(self.pub, cts, list(parts.values()), verify=False)
        self._work("combine", len(cts))
        total = decode_sum(plain, agg.vec.layout, agg.vec.length, agg.vec.weight)
        self.totals[step] = total
        return total

    def forget_before(self, step: int) -> None:
        """Drop what no later fold needs (aggregates and partials of earlier steps)."""
        for table in (self.aggs, self.received, self.totals, self.checked):
            drop: Callable[[int], bool] = lambda s: s < step  # noqa: E731
            for s in [s for s in table if drop(s)]:
                del table[s]
