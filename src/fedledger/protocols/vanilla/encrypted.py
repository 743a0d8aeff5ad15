"""Vanilla FedAvg with homomorphic aggregation (``protocol.encryption``).

Keys come from a trusted dealer at genesis. There is no dealer process: every node
derives the same keys from the experiment seed (:func:`vanilla_dealer`), which stands in for
one (in the simulator and on a localnet alike; whoever knows the seed knows every
share). Committee: the first ``committee`` clients in id order; holder ``i`` gets key
share ``i``.

Paillier: a client encrypts its trained weights (fixed point, packed; weight 1) and
sends :class:`EncryptedUpdate` with its sample count in the clear; the server scales each
vector by its count (a plaintext integer), adds them, and sends the sum to the
committee (:class:`DecryptRequest`); members answer with partial decryptions and proofs
(:class:`PartialShare`); the server verifies each (a wrong one is counted under
``rejected{reason=invalid_partial}``), combines the first ``t`` valid ones and sets the
model to the weighted mean. Fewer than ``t`` valid partials before ``phase_timeout``:
the round fails cleanly (``secure_round_failed`` = 1, the model stays).

CKKS: clients encrypt ``n * w`` under the public context; the server adds; the one key
holder (the first committee member) decrypts the sum and returns it
(:class:`DecryptedSum`). All encryption, addition and decryption runs under the
``crypto`` CPU section, and each piece declares its modelled cost
(:mod:`fedledger.privacy.he.cost`, per ciphertext and key size), which the simulator
charges as virtual time: a client's update leaves after its encryption, the sum after
the server's additions. Fault ``wrong_partial``: a member that lies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fedledger.codec import record
from fedledger.privacy.he import ckks
from fedledger.privacy.he.config import EncryptionSettings
from fedledger.privacy.he.cost import ckks_seconds, paillier_seconds
from fedledger.privacy.he.dealer import SeededDealer
from fedledger.privacy.he.encoding import Layout, decode_sum, layout_for
from fedledger.privacy.he.errors import HeError
from fedledger.privacy.he.paillier import CipherVector, encrypt_vector, sum_vectors
from fedledger.privacy.he.rand import OsRandom, RandomSource, SeededRandom
from fedledger.privacy.he.threshold import (
    PartialDecryption,
    combine,
    partial_decrypt_vector,
    verify_partial,
)
from fedledger.protocols.base import (
    Broadcast,
    CancelTimer,
    Effect,
    EmitMetric,
    Message,
    MessageReceived,
    NodeSetup,
    ProtocolNode,
    Send,
    SetTimer,
    TimerFired,
)
from fedledger.protocols.kit import handles
from fedledger.protocols.vanilla.messages import ClientUpdate
from fedledger.protocols.vanilla.nodes import TIMEOUT, Client, Server
from fedledger.protocols.vanilla.params import VanillaParams
from fedledger.seeding import derive_seed

PHASE = "decrypt-phase"
WRONG_PARTIAL = "wrong_partial"


@record("vanilla.EncryptedUpdate")
@dataclass(frozen=True)
class EncryptedUpdate(Message):
    round: int
    blob: bytes  # CipherVector.to_bytes() or a serialized CKKS vector
    num_samples: int
    loss: float


@record("vanilla.DecryptRequest")
@dataclass(frozen=True)
class DecryptRequest(Message):
    round: int
    blob: bytes


@record("vanilla.PartialShare")
@dataclass(frozen=True)
class PartialShare(Message):
    round: int
    blob: bytes  # PartialDecryption.to_bytes(n)


@record("vanilla.DecryptedSum")
@dataclass(frozen=True)
class DecryptedSum(Message):
    round: int
    total: bytes  # little-endian float64: the decrypted weighted sum (CKKS)


#: vanilla's dealer at genesis: keys derived from the experiment seed
def vanilla_dealer() -> SeededDealer:
    return SeededDealer("vanilla-paillier-dealer")


def _settings(setup: NodeSetup[VanillaParams]) -> EncryptionSettings:
    s = setup.params.encryption
    assert s is not None
    return s


def committee_of(setup: NodeSetup[VanillaParams]) -> tuple[str, ...]:
    s = _settings(setup)
    clients = sorted(p.node_id for p in setup.all_nodes if p.role == "client")
    if s.committee > len(clients):
        raise HeError(f"encryption.committee={s.committee} exceeds the {len(clients)} clients")
    return tuple(clients[: s.committee])


def encrypted_node(
    setup: NodeSetup[VanillaParams], dealer: SeededDealer
) -> ProtocolNode[VanillaParams]:
    """The server or client of the configured scheme."""
    s = _settings(setup)
    server = setup.plan.role == "server"
    if s.scheme == "ckks":
        ckks.require_tenseal()
        return CkksServer(setup, dealer) if server else CkksClient(setup, dealer)
    return PaillierServer(setup, dealer) if server else PaillierClient(setup, dealer)


class _EncryptedServer(Server):
    """Collects encrypted updates, sums them, has them decrypted; never sees one update."""

    def __init__(self, setup: NodeSetup[VanillaParams], dealer: SeededDealer) -> None:
        super().__init__(setup)
        self.settings = _settings(setup)
        self.committee = committee_of(setup)
        self.enc: dict[str, tuple[Any, int]] = {}
        self.decrypting = False
        self.weight = 0
        self.failure = ""

    def _next_round(self) -> list[Effect]:
        self.enc, self.decrypting, self.weight = {}, False, 0
        return super()._next_round()

    @handles(ClientUpdate)
    def on_update(self, event: MessageReceived) -> list[Effect]:
        raise self.gate.fail("plaintext_update", f"from {event.sender} under encryption")

    @handles(EncryptedUpdate)
    def on_encrypted(self, event: MessageReceived) -> list[Effect]:
        msg = event.message
        assert isinstance(msg, EncryptedUpdate)
        if msg.round != self.round or event.sender not in self.sampled or self.decrypting:
            return []
        if msg.num_samples < 0:
            raise self.gate.fail("wrong_shape", f"num_samples {msg.num_samples}")
        try:
            with self.setup.meter.section("crypto"):
                vec = self._parse(msg.blob)
        except HeError as exc:
            raise self.gate.fail("bad_ciphertext", f"{event.sender}: {exc}") from exc
        self.enc[event.sender] = (vec, self._weight_of(msg.num_samples))
        if len(self.enc) == len(self.sampled):
            return [CancelTimer(TIMEOUT), *self._close_round()]
        return []

    def _weight_of(self, num_samples: int) -> int:
        return num_samples if self.params.aggregator_name == "weighted_fedavg" else 1

    def on_timer(self, key: str, event: TimerFired) -> list[Effect]:
        if key == TIMEOUT and not self.decrypting:
            return self._close_round()
        if key == PHASE and self.decrypting:
            return self._fail("too few valid decryptions before the phase timeout")
        return []

    def _close_round(self) -> list[Effect]:
        if not self.enc:
            return self._end_round(0)
        self.weight = sum(w for _, w in self.enc.values())
        if self.weight <= 0:
            return self._fail("the updates carry zero samples")
        try:
            with self.setup.meter.section("crypto"):
                blob = self._sum()
        except HeError as exc:
            return self._fail(str(exc))
        self.decrypting = True
        ask = DecryptRequest(self.round, blob)
        return [Broadcast(ask, to=self._decryptors()), SetTimer(PHASE, self.settings.phase_timeout)]

    def _fail(self, why: str) -> list[Effect]:
        self.decrypting = False
        self.failure = why  # the last failed round's reason (the metric says it failed)
        return [
            CancelTimer(PHASE),
            EmitMetric("secure_round_failed", 1.0, self.round),
            *self._end_round(0),
        ]

    def _finish(self, total: np.ndarray) -> list[Effect]:
        self.decrypting = False
        self.weights = (total / float(self.weight)).astype(np.float32)
        ok = EmitMetric("secure_round_failed", 0.0, self.round)
        return [CancelTimer(PHASE), ok, *self._end_round(len(self.enc))]

    def _parse(self, blob: bytes) -> Any:
        raise NotImplementedError

    def _sum(self) -> bytes:
        raise NotImplementedError

    def _decryptors(self) -> tuple[str, ...]:
        raise NotImplementedError


class PaillierServer(_EncryptedServer):
    def __init__(self, setup: NodeSetup[VanillaParams], dealer: SeededDealer) -> None:
        super().__init__(setup, dealer)
        s = self.settings
        self.pub, _, _ = dealer.paillier(setup.seed, s)
        self.layout: Layout = paillier_layout(s)
        self.total: CipherVector | None = None
        self.valid: dict[int, PartialDecryption] = {}

    def _parse(self, blob: bytes) -> CipherVector:
        vec = CipherVector.from_bytes(blob)
        if vec.n != self.pub.n or vec.layout != self.layout or vec.weight != 1:
            raise HeError("cipher vector under another key, layout or weight")
        if vec.length != self.weights.size:
            raise HeError(f"{vec.length} coordinates; the model has {self.weights.size}")
        return vec

    def _sum(self) -> bytes:
        names = sorted(self.enc)
        vecs = [self.enc[n][0] for n in names]
        self.total = sum_vectors(vecs, [self.enc[n][1] for n in names])
        self.valid = {}
        cts, bits = len(self.total.ciphertexts), self.settings.key_bits
        work = paillier_seconds("scale", cts * len(vecs), bits)
        self.setup.meter.work("crypto", work + paillier_seconds("add", cts * (len(vecs) - 1), bits))
        return self.total.to_bytes()

    def _decryptors(self) -> tuple[str, ...]:
        return self.committee

    @handles(PartialShare)
    def on_partial(self, event: MessageReceived) -> list[Effect]:
        msg = event.message
        assert isinstance(msg, PartialShare)
        if msg.round != self.round or not self.decrypting or self.total is None:
            return []
        if event.sender not in self.committee:
            raise self.gate.fail("not_a_key_holder", event.sender)
        index = self.committee.index(event.sender) + 1
        cts = self.total.ciphertexts
        with self.setup.meter.section("crypto"):
            try:
                part = PartialDecryption.from_bytes(msg.blob, self.pub.n)
            except HeError as exc:
                raise self.gate.fail("invalid_partial", f"{event.sender}: {exc}") from exc
            ok = part.index == index and verify_partial(self.pub, cts, part)
            self.setup.meter.work(
                "crypto", paillier_seconds("verify", len(cts), self.settings.key_bits)
            )
            if not ok:
                raise self.gate.fail("invalid_partial", f"{event.sender}: proof failed")
            self.valid[index] = part
            if len(self.valid) < self.pub.t:
                return []
            plain = combine(self.pub, cts, list(self.valid.values()), verify=False)
            self.setup.meter.work(
                "crypto", paillier_seconds("combine", len(cts), self.settings.key_bits)
            )
            total = decode_sum(plain, self.total.layout, self.total.length, self.total.weight)
        return self._finish(total)


def paillier_layout(s: EncryptionSettings) -> Layout:
    return layout_for(
        s.key_bits,
        frac_bits=s.frac_bits,
        clamp=s.clamp,
        max_weight=s.max_total_samples,
        packing=s.packing,
    )


def _enc_rng(setup: NodeSetup[VanillaParams], round_: int) -> RandomSource:
    if _settings(setup).randomness == "os":
        return OsRandom()
    return SeededRandom(derive_seed(setup.seed, "vanilla-encrypt", setup.node_id, round_), "enc")


class PaillierClient(Client):
    """Encrypts its update; a committee member also partially decrypts sums."""

    def __init__(self, setup: NodeSetup[VanillaParams], dealer: SeededDealer) -> None:
        super().__init__(setup)
        self.settings = _settings(setup)
        self.pub, shares, self.encryptor = dealer.paillier(setup.seed, self.settings)
        committee = committee_of(setup)
        self.share = shares[committee.index(self.node_id)] if self.node_id in committee else None
        self.layout = paillier_layout(self.settings)

    def _send_update(self, update: ClientUpdate) -> list[Effect]:
        with self.setup.meter.section("crypto"):
            rng = _enc_rng(self.setup, update.round)
            vec = encrypt_vector(self.encryptor, update.weights, self.layout, rng)
            blob = vec.to_bytes()
        cts = len(vec.ciphertexts)
        self.setup.meter.work("crypto", paillier_seconds("encrypt", cts, self.settings.key_bits))
        msg = EncryptedUpdate(update.round, blob, update.num_samples, update.loss)
        return [Send(self.server, msg)]

    @handles(DecryptRequest)
    def on_decrypt(self, event: MessageReceived) -> list[Effect]:
        msg = event.message
        assert isinstance(msg, DecryptRequest)
        if event.sender != self.server:
            raise self.gate.fail("not_the_server", event.sender)
        if self.share is None:
            raise self.gate.fail("not_a_key_holder", "asked to decrypt")
        try:
            with self.setup.meter.section("crypto"):
                vec = CipherVector.from_bytes(msg.blob)
                rng = _enc_rng(self.setup, 10**6 + msg.round)
                part = partial_decrypt_vector(self.pub, self.share, vec, rng)
        except HeError as exc:
            raise self.gate.fail("bad_ciphertext", str(exc)) from exc
        cts = len(vec.ciphertexts)
        self.setup.meter.work("crypto", paillier_seconds("partial", cts, self.settings.key_bits))
        if WRONG_PARTIAL in self.setup.faults:
            n2 = self.pub.n2
            values = (part.values[0] * self.pub.v % n2, *part.values[1:])
            part = PartialDecryption(part.index, values, part.proof)
        return [Send(self.server, PartialShare(msg.round, part.to_bytes(self.pub.n)))]


class CkksServer(_EncryptedServer):
    def __init__(self, setup: NodeSetup[VanillaParams], dealer: SeededDealer) -> None:
        super().__init__(setup, dealer)
        self.context = ckks.load_context(dealer.ckks(setup.seed, self.settings).public)

    def _parse(self, blob: bytes) -> bytes:
        vec = ckks.load_vector(self.context, blob)
        if vec.size() != self.weights.size:
            raise HeError(f"{vec.size()} coordinates; the model has {self.weights.size}")
        return blob

    def _sum(self) -> bytes:
        blobs = [self.enc[n][0] for n in sorted(self.enc)]
        self.setup.meter.work("crypto", ckks_seconds("add", self.weights.size) * (len(blobs) - 1))
        return ckks.add_all(self.context, blobs)

    def _decryptors(self) -> tuple[str, ...]:
        return self.committee[:1]

    @handles(DecryptedSum)
    def on_sum(self, event: MessageReceived) -> list[Effect]:
        msg = event.message
        assert isinstance(msg, DecryptedSum)
        if msg.round != self.round or not self.decrypting:
            return []
        if event.sender != self.committee[0]:
            raise self.gate.fail("not_a_key_holder", event.sender)
        total = np.frombuffer(msg.total, dtype="<f8")
        if total.size != self.weights.size:
            raise self.gate.fail("wrong_shape", f"decrypted sum from {event.sender}")
        return self._finish(total.astype(np.float64))


class CkksClient(Client):
    """Encrypts ``n * w``; the key holder (first committee member) decrypts sums."""

    def __init__(self, setup: NodeSetup[VanillaParams], dealer: SeededDealer) -> None:
        super().__init__(setup)
        self.settings = _settings(setup)
        keys = dealer.ckks(setup.seed, self.settings)
        holder = committee_of(setup)[0] == self.node_id
        self.context = ckks.load_context(keys.secret if holder else keys.public)
        self.holder = holder

    def _send_update(self, update: ClientUpdate) -> list[Effect]:
        weight = update.num_samples if self.params_weighted() else 1
        with self.setup.meter.section("crypto"):
            blob = ckks.encrypt(self.context, np.asarray(update.weights, np.float64) * weight)
        self.setup.meter.work("crypto", ckks_seconds("encrypt", update.weights.size))
        return [
            Send(self.server, EncryptedUpdate(update.round, blob, update.num_samples, update.loss))
        ]

    def params_weighted(self) -> bool:
        return self.setup.params.aggregator_name == "weighted_fedavg"

    @handles(DecryptRequest)
    def on_decrypt(self, event: MessageReceived) -> list[Effect]:
        msg = event.message
        assert isinstance(msg, DecryptRequest)
        if event.sender != self.server:
            raise self.gate.fail("not_the_server", event.sender)
        if not self.holder:
            raise self.gate.fail("not_a_key_holder", "asked to decrypt")
        try:
            with self.setup.meter.section("crypto"):
                total = ckks.decrypt(self.context, msg.blob)
        except HeError as exc:
            raise self.gate.fail("bad_ciphertext", str(exc)) from exc
        self.setup.meter.work("crypto", ckks_seconds("decrypt", total.size))
        return [Send(self.server, DecryptedSum(msg.round, total.astype("<f8").tobytes()))]
