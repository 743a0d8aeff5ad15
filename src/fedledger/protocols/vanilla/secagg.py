"""Vanilla FedAvg with secure aggregation (``protocol.secure_aggregation: {threshold: t}``).

Each round, after the server sends the global model to the sampled clients:

1. a client advertises fresh X25519 keys (:class:`AdvertiseKeys`) while it trains; the
   server answers the advertisers with the roster U1 (:class:`KeyRoster`);
2. each member seals Shamir shares of its mask key and self-mask seed to every other
   member (:class:`SharedKeys`, through the server, which cannot open them); the server
   forwards each member of U2 its inbox (:class:`ShareInbox`);
3. a client with its trained model and its inbox sends the masked ring vector
   ``(n q(w), n)`` (:class:`MaskedInput`): the sample count is masked too, so the
   server learns only the survivors' total;
4. the server asks the survivors U3 for the shares it needs (:class:`UnmaskRequest` /
   :class:`UnmaskShares`), removes the masks and sets the model to the weighted mean.

Each phase waits for everyone or ``phase_timeout`` (the input phase: ``round_timeout``);
with fewer than ``t`` clients left the round fails cleanly: the model stays, the metric
``secure_round_failed`` is 1. The server never receives a plaintext update. The
masking work runs under the ``crypto`` CPU section (measured CPU, not virtual time).
Fault ``drop_after_keys``: a client that shares its keys, then never sends its input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedledger.codec import record
from fedledger.privacy.he.rand import OsRandom, RandomSource, SeededRandom
from fedledger.privacy.secagg import SecAggClient, SecAggError, SecAggServer
from fedledger.privacy.secagg.client import KeyAd, Reveal
from fedledger.privacy.secagg.config import SecAggSettings
from fedledger.privacy.secagg.shares import FIELD_BYTES
from fedledger.protocols.base import (
    Broadcast,
    CancelTimer,
    Effect,
    EmitMetric,
    Message,
    MessageReceived,
    NodeSetup,
    Send,
    SetTimer,
    TimerFired,
)
from fedledger.protocols.kit import handles
from fedledger.protocols.vanilla.messages import ClientUpdate, GlobalModel
from fedledger.protocols.vanilla.nodes import TIMEOUT, Client, Server
from fedledger.protocols.vanilla.params import VanillaParams
from fedledger.seeding import derive_seed

PHASE = "secagg-phase"
DROP_AFTER_KEYS = "drop_after_keys"


@record("vanilla.AdvertiseKeys")
@dataclass(frozen=True)
class AdvertiseKeys(Message):
    round: int
    channel_pk: bytes
    mask_pk: bytes


@record("vanilla.KeyRoster")
@dataclass(frozen=True)
class KeyRoster(Message):
    round: int
    nodes: tuple[str, ...]
    channel_pks: tuple[bytes, ...]
    mask_pks: tuple[bytes, ...]


@record("vanilla.SharedKeys")
@dataclass(frozen=True)
class SharedKeys(Message):
    round: int
    commitment: bytes
    recipients: tuple[str, ...]
    sealed: tuple[bytes, ...]


@record("vanilla.ShareInbox")
@dataclass(frozen=True)
class ShareInbox(Message):
    round: int
    senders: tuple[str, ...]
    sealed: tuple[bytes, ...]


@record("vanilla.MaskedInput")
@dataclass(frozen=True)
class MaskedInput(Message):
    round: int
    masked: bytes  # little-endian uint64 ring elements
    loss: float


@record("vanilla.UnmaskRequest")
@dataclass(frozen=True)
class UnmaskRequest(Message):
    round: int
    survivors: tuple[str, ...]


@record("vanilla.UnmaskShares")
@dataclass(frozen=True)
class UnmaskShares(Message):
    round: int
    key_owners: tuple[str, ...]
    key_shares: tuple[bytes, ...]
    seed_owners: tuple[str, ...]
    seed_shares: tuple[bytes, ...]


def _int(b: bytes) -> int:
    if len(b) != FIELD_BYTES:
        raise SecAggError(f"share of {len(b)} bytes; allowed: {FIELD_BYTES}")
    return int.from_bytes(b, "big")


def _rng(setup: NodeSetup[VanillaParams], kind: str, round_: int) -> RandomSource:
    settings = setup.params.secure_aggregation
    assert settings is not None
    if settings.randomness == "os":
        return OsRandom()
    return SeededRandom(derive_seed(setup.seed, kind, setup.node_id, round_), "secagg")


class SecAggVanillaServer(Server):
    """The vanilla server that only ever sums masked vectors."""

    def __init__(self, setup: NodeSetup[VanillaParams]) -> None:
        super().__init__(setup)
        settings = setup.params.secure_aggregation
        assert settings is not None
        self.settings: SecAggSettings = settings
        self.codec = settings.codec()
        self.phase = ""
        self.sa: SecAggServer | None = None
        self.ads: dict[str, KeyAd] = {}
        self.shared: dict[str, tuple[bytes, dict[str, bytes]]] = {}
        self.reveals: dict[str, Reveal] = {}
        self.losses: dict[str, float] = {}

    def _next_round(self) -> list[Effect]:
        effects = [e for e in super()._next_round() if not _is_round_timer(e)]
        started = any(
            isinstance(e, Broadcast) and isinstance(e.message, GlobalModel) for e in effects
        )
        if not started:
            return effects  # finished (no round started)
        if self.settings.threshold > len(self.sampled):
            raise SecAggError(
                f"secure_aggregation.threshold={self.settings.threshold} exceeds the "
                f"{len(self.sampled)} clients sampled per round"
            )
        length = self.weights.size + 1
        self.sa = SecAggServer(self.round, self.settings.threshold, length, self.sampled)
        self.phase, self.ads, self.shared, self.reveals, self.losses = "keys", {}, {}, {}, {}
        return [*effects, SetTimer(PHASE, self.settings.phase_timeout)]

    def on_timer(self, key: str, event: TimerFired) -> list[Effect]:
        return self._advance() if key == PHASE and self.phase else []

    @handles(ClientUpdate)
    def on_update(self, event: MessageReceived) -> list[Effect]:
        raise self.gate.fail("plaintext_update", f"from {event.sender} under secure aggregation")

    def _fresh(self, event: MessageReceived, phase: str) -> bool:
        msg = event.message
        return getattr(msg, "round", None) == self.round and self.phase == phase

    @handles(AdvertiseKeys)
    def on_keys(self, event: MessageReceived) -> list[Effect]:
        msg = event.message
        assert isinstance(msg, AdvertiseKeys)
        if not self._fresh(event, "keys") or event.sender not in self.sampled:
            return []
        self.ads[event.sender] = KeyAd(event.sender, msg.channel_pk, msg.mask_pk)
        return self._advance() if len(self.ads) == len(self.sampled) else []

    @handles(SharedKeys)
    def on_shared(self, event: MessageReceived) -> list[Effect]:
        msg = event.message
        assert isinstance(msg, SharedKeys) and self.sa is not None
        if not self._fresh(event, "shares") or event.sender not in self.sa.roster:
            return []
        if len(msg.recipients) != len(msg.sealed):
            raise self.gate.fail("malformed_secagg", f"shared keys of {event.sender}")
        self.shared[event.sender] = (
            msg.commitment,
            dict(zip(msg.recipients, msg.sealed, strict=True)),
        )
        return self._advance() if len(self.shared) == len(self.sa.roster) else []

    @handles(MaskedInput)
    def on_masked(self, event: MessageReceived) -> list[Effect]:
        msg = event.message
        assert isinstance(msg, MaskedInput) and self.sa is not None
        if not self._fresh(event, "inputs"):
            return []
        with self.setup.meter.section("crypto"):
            arr = np.frombuffer(msg.masked, dtype="<u8").astype(np.uint64)
            if len(msg.masked) % 8 or not self.sa.accept_input(event.sender, arr):
                raise self.gate.fail("wrong_shape", f"masked input of {event.sender}")
        self.losses[event.sender] = msg.loss
        return self._advance() if len(self.losses) == len(self.sa.u2) else []

    @handles(UnmaskShares)
    def on_unmask(self, event: MessageReceived) -> list[Effect]:
        msg = event.message
        assert isinstance(msg, UnmaskShares) and self.sa is not None
        if not self._fresh(event, "unmask") or event.sender not in self.sa.u3:
            return []
        try:
            keys = dict(zip(msg.key_owners, map(_int, msg.key_shares), strict=True))
            seeds = dict(zip(msg.seed_owners, map(_int, msg.seed_shares), strict=True))
        except (SecAggError, ValueError) as exc:
            raise self.gate.fail("malformed_secagg", f"{event.sender}: {exc}") from exc
        self.reveals[event.sender] = Reveal(keys, seeds)
        return self._advance() if len(self.reveals) == len(self.sa.u3) else []

    def _advance(self) -> list[Effect]:
        """Close the current phase (everyone answered, or its timer fired)."""
        assert self.sa is not None
        timer = [CancelTimer(PHASE)]
        try:
            with self.setup.meter.section("crypto"):
                if self.phase == "keys":
                    roster = self.sa.make_roster(self.ads)
                    self.phase = "shares"
                    msg = KeyRoster(
                        self.round,
                        tuple(a.node for a in roster),
                        tuple(a.channel_pk for a in roster),
                        tuple(a.mask_pk for a in roster),
                    )
                    to = tuple(a.node for a in roster)
                    return [
                        *timer,
                        Broadcast(msg, to=to),
                        SetTimer(PHASE, self.settings.phase_timeout),
                    ]
                if self.phase == "shares":
                    routes = self.sa.route(self.shared)
                    self.phase = "inputs"
                    sends: list[Effect] = [
                        Send(v, ShareInbox(self.round, tuple(box), tuple(box.values())))
                        for v, box in sorted(routes.items())
                    ]
                    return [*timer, *sends, SetTimer(PHASE, self.params.round_timeout)]
                if self.phase == "inputs":
                    u3 = self.sa.close_inputs()
                    self.phase = "unmask"
                    ask = Broadcast(UnmaskRequest(self.round, u3), to=u3)
                    return [*timer, ask, SetTimer(PHASE, self.settings.phase_timeout)]
                total = self.sa.finish(self.reveals)
                mean, _ = self.codec.decode_mean(total)
        except SecAggError as exc:
            self.phase = ""
            failed = EmitMetric("secure_round_failed", 1.0, self.round)
            for culprit in sorted(getattr(exc, "culprits", [])):
                self.gate.fail("tampered_share", culprit)
            return [*timer, failed, *self._end_round(0)]
        self.phase = ""
        for culprit in sorted(self.sa.culprits):
            self.gate.fail("tampered_share", culprit)
        self.weights = mean.astype(np.float32)
        ok = EmitMetric("secure_round_failed", 0.0, self.round)
        return [*timer, ok, *self._end_round(len(self.sa.u3))]


def _is_round_timer(effect: Effect) -> bool:
    return isinstance(effect, SetTimer) and effect.key == TIMEOUT


class SecAggVanillaClient(Client):
    """The vanilla client that sends only a masked update."""

    def __init__(self, setup: NodeSetup[VanillaParams]) -> None:
        super().__init__(setup)
        settings = setup.params.secure_aggregation
        assert settings is not None
        self.settings: SecAggSettings = settings
        self.codec = settings.codec()
        self.sa: SecAggClient | None = None
        self.pending: ClientUpdate | None = None
        self.inbox = False

    def on_model(self, event: MessageReceived) -> list[Effect]:
        effects = super().on_model(event)
        msg = event.message
        assert isinstance(msg, GlobalModel)
        rng = _rng(self.setup, "secagg-client", msg.round)
        with self.setup.meter.section("crypto"):
            self.sa = SecAggClient(self.node_id, msg.round, self.settings.threshold, rng)
            ad = self.sa.advertise()
        self.pending, self.inbox = None, False
        return [*effects, Send(self.server, AdvertiseKeys(msg.round, ad.channel_pk, ad.mask_pk))]

    def _from_server(self, event: MessageReceived) -> bool:
        if event.sender != self.server:
            raise self.gate.fail("not_the_server", event.sender)
        return self.sa is not None and getattr(event.message, "round", None) == self.round

    @handles(KeyRoster)
    def on_roster(self, event: MessageReceived) -> list[Effect]:
        msg = event.message
        assert isinstance(msg, KeyRoster)
        if not self._from_server(event) or self.sa is None:
            return []
        roster = [KeyAd(*t) for t in zip(msg.nodes, msg.channel_pks, msg.mask_pks, strict=False)]
        try:
            with self.setup.meter.section("crypto"):
                commitment, sealed = self.sa.share_keys(roster)
        except SecAggError as exc:
            raise self.gate.fail("bad_roster", str(exc)) from exc
        names = tuple(sorted(sealed))
        out = SharedKeys(self.round, commitment, names, tuple(sealed[n] for n in names))
        return [Send(self.server, out)]

    @handles(ShareInbox)
    def on_inbox(self, event: MessageReceived) -> list[Effect]:
        msg = event.message
        assert isinstance(msg, ShareInbox)
        if not self._from_server(event) or self.sa is None or self.inbox:
            return []
        try:
            with self.setup.meter.section("crypto"):
                self.sa.receive(dict(zip(msg.senders, msg.sealed, strict=True)))
        except (SecAggError, ValueError) as exc:
            raise self.gate.fail("tampered_share", str(exc)) from exc
        self.inbox = True
        return self._maybe_send()

    def _send_update(self, update: ClientUpdate) -> list[Effect]:
        self.pending = update
        return self._maybe_send()

    def _maybe_send(self) -> list[Effect]:
        if self.pending is None or not self.inbox or self.sa is None:
            return []
        if DROP_AFTER_KEYS in self.setup.faults:
            return []
        update, self.pending = self.pending, None
        with self.setup.meter.section("crypto"):
            ring = self.codec.encode(update.weights, update.num_samples)
            masked = self.sa.masked_input(ring).astype("<u8").tobytes()
        return [Send(self.server, MaskedInput(self.round, masked, update.loss))]

    @handles(UnmaskRequest)
    def on_unmask(self, event: MessageReceived) -> list[Effect]:
        msg = event.message
        assert isinstance(msg, UnmaskRequest)
        if not self._from_server(event) or self.sa is None:
            return []
        try:
            with self.setup.meter.section("crypto"):
                reveal = self.sa.unmask(msg.survivors)
        except SecAggError as exc:
            raise self.gate.fail("bad_unmask_request", str(exc)) from exc
        k = sorted(reveal.key_shares)
        s = sorted(reveal.seed_shares)
        enc = lambda v: v.to_bytes(FIELD_BYTES, "big")  # noqa: E731
        out = UnmaskShares(
            self.round,
            tuple(k),
            tuple(enc(reveal.key_shares[u]) for u in k),
            tuple(s),
            tuple(enc(reveal.seed_shares[u]) for u in s),
        )
        return [Send(self.server, out)]
