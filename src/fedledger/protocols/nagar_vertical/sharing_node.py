"""Sharing mode of ``nagar-vertical``: :mod:`.sharing`'s IoT data sharing as simulator nodes.

- ``iot-<d>`` (d = 0..devices-1) hold seeded sensor streams and never train. A timer fires
  each ``hour_seconds`` of virtual time for hour h = 0..rounds-1: the device clips and
  Laplace-noises that hour's reading (:class:`~.sharing.IotDevice`, its budget from the
  plan's ``epsilon_total`` by basic composition; a reading over budget is not sent and
  counted in ``refused_budget``) and sends it sealed to the trainer (``SealedReadingMsg``)
  or as one Shamir share per gateway (``ReadingShare``).
- ``gateway-<g>`` (g = 1..m, transport ``shamir``) check each share and forward it to the
  trainer; a gateway sees one share per reading, uniform whatever the reading when t >= 2.
- ``trainer`` opens sealed readings or reconstructs from ``gateway_threshold`` shares
  (checking any further share against them), and at the middle of each hour fits the
  daily cycle to everything received so far and emits ``rmse`` per feature against the
  devices' noise-free mean cycle (the evaluation's truth), ``readings`` and ``reward``
  (``per_work`` per reading processed). Readings must reach it within half an hour of
  virtual time (the network's latency is far below that in every config).

Refusals, counted by reason: ``not_a_device``, ``not_a_gateway``, ``not_the_sender`` (a
reading or share naming another device), ``wrong_hour``, ``bad_shape``, ``bad_share``
(wrong index or a value outside the field), ``inconsistent_share`` (off the polynomial of
the first t), ``bad_cipher`` (a sealed box that does not open), ``bad_reading`` (a value
that is not finite), ``repeated_reading`` and ``repeated_share``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey

from fedledger.crypto.shamir import ShamirError
from fedledger.errors import ConfigError
from fedledger.protocols.base import (
    EmitMetric,
    MessageReceived,
    NodeSetup,
    Send,
    SetTimer,
    Start,
    TimerFired,
)
from fedledger.protocols.kit import TimerKey, handles
from fedledger.protocols.nagar_vertical.chained import STALL, ChainedNode
from fedledger.protocols.nagar_vertical.ledger import NO_ACCURACY, RoundRecord, weights_digest
from fedledger.protocols.nagar_vertical.mode_messages import ReadingShare, SealedReadingMsg
from fedledger.protocols.nagar_vertical.mode_plans import (
    SHARING_REPORTERS,
    sharing_party_plan,
    sharing_rules,
)
from fedledger.protocols.nagar_vertical.params import NagarVerticalParams
from fedledger.protocols.nagar_vertical.sharing import (
    PRIME,
    IotDevice,
    SharingPlan,
    cycle_rmse,
    device_rngs,
    fit_cycle,
    open_sealed,
    reconstruct_values,
    seal,
    share_reading,
)

TRAINER_ID = "trainer"
ROLE_IOT, ROLE_GATEWAY, ROLE_TRAINER = "iot", "gateway", "trainer"
Effects = list  # type: ignore[type-arg]


def iot_ids(devices: int) -> tuple[str, ...]:
    return tuple(f"iot-{d}" for d in range(devices))


def gateway_ids(params: NagarVerticalParams) -> tuple[str, ...]:
    if params.transport != "shamir":
        return ()
    return tuple(f"gateway-{g}" for g in range(1, params.gateways + 1))


def index_of(node_id: str, prefix: str, count: int, first: int = 0) -> int | None:
    """The index in ``<prefix><i>`` (first <= i < first + count), None for any other id."""
    if not isinstance(node_id, str) or not node_id.startswith(prefix):
        return None
    tail = node_id[len(prefix) :]
    if not tail.isascii() or not tail.isdigit() or str(int(tail)) != tail:
        return None
    i = int(tail)
    return i if first <= i < first + count else None


def sharing_plan(p: NagarVerticalParams) -> SharingPlan:
    return SharingPlan(p.epsilon_reading, p.epsilon_total, p.transport, p.gateways,
                       p.gateway_threshold, p.per_work)  # fmt: skip


@dataclass(frozen=True)
class SharingShared:
    """The simulation dealer's hand-out: the streams, their noise-free offsets (the
    evaluation's truth) and the trainer's X25519 key."""

    streams: np.ndarray
    offsets: np.ndarray
    trainer_key: PrivateKey


def _hour_timer(hour: int) -> str:
    return str(TimerKey("hour", hour))


class SharingNode(ChainedNode):
    """The plan check before any work, and a halt once this node's part is over and the
    last round (hour) is on chain."""

    def __init__(self, setup: NodeSetup[NagarVerticalParams]) -> None:
        super().__init__(setup)
        self.init_ledger(sharing_party_plan(setup), SHARING_REPORTERS, sharing_rules)
        self.hours = setup.horizon.length
        self.finished = False

    def on_start(self, event: Start) -> Effects:
        out = self.start_ledger(event.time)
        if self.ledger.done:
            return self.halt("every round is on chain")
        return out + self.plan_accepted() if self.ledger.plan is not None else out

    def on_timer(self, key: str, event: TimerFired) -> Effects:
        if key == STALL:
            return super().on_timer(key, event)
        parsed = TimerKey.parse(key)
        assert parsed is not None and parsed.index is not None  # only timers it set arrive
        return self.on_hour(parsed.index)

    def on_hour(self, hour: int) -> Effects:
        return []

    def end_metrics(self) -> tuple[EmitMetric, ...]:
        return ()

    def block_stored(self, rec: RoundRecord) -> Effects:
        if self.finished and self.ledger.done:
            return self.halt(extra=self.end_metrics())
        return []


class IotNode(SharingNode):
    """A data holder: one privatised reading per hour, sealed or split across gateways;
    its spent budget is kept with its chain, so a restart never spends it twice."""

    def __init__(self, setup: NodeSetup[NagarVerticalParams], shared: SharingShared) -> None:
        super().__init__(setup)
        p = setup.params
        index = index_of(setup.node_id, "iot-", p.devices)
        assert index is not None
        self.plan = sharing_plan(p)
        noise, self.share_rng = device_rngs(setup.seed, index)
        self.device = IotDevice(index, shared.streams[index], self.plan, noise)
        self.trainer_public = shared.trainer_key.public_key
        self.gateways = gateway_ids(p)
        self.hour_seconds = p.hour_seconds
        self.sent = 0
        self.next_hour = 0

    def progress(self) -> tuple[object, ...]:
        return (*super().progress(), self.next_hour)

    def plan_accepted(self) -> Effects:
        kept = self.ledger.kept("iot/state")  # (next hour, sent, refused, epsilon spent)
        if kept is not None:
            hour, sent, refused, spent = (float(v) for v in kept.decode().split(","))
            self.next_hour, self.sent = int(hour), int(sent)
            self.device.refused_budget = int(refused)
            if spent:
                self.device.accountant.spend(spent)
        if self.next_hour >= self.hours:
            self.finished = True
            return self.block_stored(self.ledger.records[self.ledger.round])
        due = max(0.0, self.next_hour * self.hour_seconds - self.now)  # 0 at a fresh start
        return [SetTimer(_hour_timer(self.next_hour), due)]

    def on_hour(self, hour: int) -> Effects:
        self.ledger.require_plan("a reading")
        out: Effects = []
        values = self.device.reading(hour)
        if values is not None:
            self.sent += 1
            d = self.device.index
            if self.plan.transport == "sealed":
                msg = seal(self.trainer_public, d, hour, values)
                out.append(Send(TRAINER_ID, SealedReadingMsg(msg.ciphertext)))
            else:
                shares = share_reading(d, hour, values, self.plan, self.share_rng)
                out += [Send(g, ReadingShare(s.device, s.hour, s.x, s.ys))
                        for g, s in zip(self.gateways, shares, strict=True)]  # fmt: skip
        self.next_hour = hour + 1
        state = (self.next_hour, self.sent, self.device.refused_budget, self.device.epsilon_spent)
        self.ledger.keep("iot/state", ",".join(repr(v) for v in state).encode())
        if hour + 1 < self.hours:
            return [*out, SetTimer(_hour_timer(hour + 1), self.hour_seconds)]
        self.finished = True
        return [*out, *self.block_stored(self.ledger.records[self.ledger.round])]

    def end_metrics(self) -> tuple[EmitMetric, ...]:
        refused = float(self.device.refused_budget)
        return (EmitMetric("epsilon_spent", self.device.epsilon_spent, self.hours),
                EmitMetric("refused_budget", refused, self.hours))  # fmt: skip


def check_share(gate, msg: ReadingShare, p: NagarVerticalParams, hours: int) -> None:  # type: ignore[no-untyped-def]
    """Refuse a share of no device, hour or gateway, of the wrong length or off the field."""
    if not 0 <= msg.device < p.devices:
        raise gate.fail("not_a_device", f"share of device {msg.device}")
    if not 0 <= msg.hour < hours:
        raise gate.fail("wrong_hour", f"share of hour {msg.hour}; allowed 0..{hours - 1}")
    if len(msg.ys) != 2:
        raise gate.fail("bad_shape", f"{len(msg.ys)} feature shares; expected 2")
    if not all(isinstance(y, int) and 0 <= y < PRIME for y in msg.ys):
        raise gate.fail("bad_share", "a share value outside GF(2**127 - 1)")


class GatewayNode(SharingNode):
    """A relay: takes its own share of each reading from the device and forwards it."""

    def __init__(self, setup: NodeSetup[NagarVerticalParams]) -> None:
        super().__init__(setup)
        self.p = setup.params
        index = index_of(setup.node_id, "gateway-", self.p.gateways, first=1)
        assert index is not None
        self.index = index
        self.seen: set[tuple[int, int]] = set()
        self.views: list[ReadingShare] = []  # what this gateway saw (for the privacy tests)
        self.finished = True  # it forwards until the last round is on chain

    def progress(self) -> tuple[object, ...]:
        return (*super().progress(), len(self.seen))

    def end_metrics(self) -> tuple[EmitMetric, ...]:
        return (EmitMetric("forwarded", float(len(self.seen)), self.hours),)

    @handles(ReadingShare)
    def on_share(self, event: MessageReceived) -> Effects:
        msg = event.message
        assert isinstance(msg, ReadingShare)
        device = index_of(event.sender, "iot-", self.p.devices)
        if device is None:
            raise self.gate.fail("not_a_device", f"share from {event.sender}")
        self.ledger.require_plan("a share")
        if msg.device != device:
            raise self.gate.fail("not_the_sender", f"{event.sender} sent device {msg.device}")
        if msg.x != self.index:
            raise self.gate.fail("bad_share", f"share x={msg.x} at gateway {self.index}")
        check_share(self.gate, msg, self.p, self.hours)
        if (msg.device, msg.hour) in self.seen:
            raise self.gate.fail("repeated_reading", f"device {msg.device} hour {msg.hour}")
        self.seen.add((msg.device, msg.hour))
        self.views.append(msg)
        return [Send(TRAINER_ID, msg)]



class TrainerNode(SharingNode):
    """The plan's requester and sequencer: opens or reconstructs readings, fits the daily
    cycle each hour, signs its result (readings processed: its reward) per hour."""

    def __init__(self, setup: NodeSetup[NagarVerticalParams], shared: SharingShared) -> None:
        super().__init__(setup)
        self.p = setup.params
        self.plan = sharing_plan(self.p)
        self.key = shared.trainer_key
        self.offsets = shared.offsets
        self.readings: dict[tuple[int, int], np.ndarray] = {}
        self.shares: dict[tuple[int, int], dict[int, tuple[int, ...]]] = {}
        self.rmse: list[np.ndarray] = []

    def progress(self) -> tuple[object, ...]:
        return (*super().progress(), len(self.readings))

    def plan_accepted(self) -> Effects:
        kept = self.ledger.kept("trainer/readings")  # after a restart: what it had
        if kept is not None:
            rows = np.frombuffer(kept, dtype="<f8").reshape(-1, 4)
            self.readings = {(int(r[0]), int(r[1])): r[2:].copy() for r in rows}
        hour = self.ledger.round
        if hour >= self.hours:
            return []
        due = (hour + 0.5) * self.p.hour_seconds - self.now  # after a restart: maybe past
        return [SetTimer(_hour_timer(hour), max(0.0, due))]

    @handles(SealedReadingMsg)
    def on_sealed(self, event: MessageReceived) -> Effects:
        msg = event.message
        assert isinstance(msg, SealedReadingMsg)
        device = index_of(event.sender, "iot-", self.p.devices)
        if device is None or self.plan.transport != "sealed":
            raise self.gate.fail("not_a_device", f"sealed reading from {event.sender}")
        try:
            d, hour, values = open_sealed(self.key, bytes(msg.ciphertext), 2)
        except (CryptoError, TypeError) as exc:
            raise self.gate.fail("bad_cipher", f"sealed box: {exc}") from None
        except ConfigError as exc:
            raise self.gate.fail("bad_shape", str(exc)) from None
        if d != device:
            raise self.gate.fail("not_the_sender", f"{event.sender} sent device {d}")
        return self._record(d, hour, values)

    def _record(self, device: int, hour: int, values: np.ndarray) -> Effects:
        if not 0 <= hour < self.hours:
            raise self.gate.fail("wrong_hour", f"reading of hour {hour}")
        self.ledger.require_plan("a reading")
        if not np.all(np.isfinite(values)):
            raise self.gate.fail("bad_reading", "a value that is not finite")
        if (device, hour) in self.readings:
            raise self.gate.fail("repeated_reading", f"device {device} hour {hour}")
        self.readings[(device, hour)] = values
        return []

    @handles(ReadingShare)
    def on_share(self, event: MessageReceived) -> Effects:
        msg = event.message
        assert isinstance(msg, ReadingShare)
        gateway = index_of(event.sender, "gateway-", self.p.gateways, first=1)
        if gateway is None or self.plan.transport != "shamir":
            raise self.gate.fail("not_a_gateway", f"share from {event.sender}")
        if msg.x != gateway:
            raise self.gate.fail("bad_share", f"share x={msg.x} from gateway {gateway}")
        check_share(self.gate, msg, self.p, self.hours)
        got = self.shares.setdefault((msg.device, msg.hour), {})
        if gateway in got:
            raise self.gate.fail("repeated_share", f"gateway {gateway}, {msg.device}/{msg.hour}")
        t = self.p.gateway_threshold
        if len(got) >= t:  # reconstructed already: the share must lie on the same polynomial
            try:
                reconstruct_values({**dict(list(got.items())[:t]), gateway: msg.ys}, t)
            except ShamirError as exc:
                raise self.gate.fail("inconsistent_share", str(exc)) from None
            got[gateway] = msg.ys
            return []
        got[gateway] = msg.ys
        if len(got) < t:
            return []
        return self._record(msg.device, msg.hour, reconstruct_values(got, t))

    def on_hour(self, hour: int) -> Effects:
        done = len(self.readings)
        out: Effects = [EmitMetric("readings", float(done), hour),
                        EmitMetric("reward", self.p.per_work * done, hour)]  # fmt: skip
        coef = np.zeros((3, 2))
        if self.readings:
            coef = fit_cycle(self.readings)
            rmse = cycle_rmse(coef, self.offsets)
            self.rmse.append(rmse)
            out += [EmitMetric("rmse", float(v), hour, (("feature", f.name),))
                    for v, f in zip(rmse, self.plan.features, strict=True)]  # fmt: skip
        rows = [(d, h, *v) for (d, h), v in sorted(self.readings.items())]
        self.ledger.keep("trainer/readings", np.asarray(rows, dtype="<f8").tobytes())
        self.ledger.keep(f"weights/{hour + 1}", np.asarray(coef, dtype="<f8").tobytes())
        out += self.ledger.report(hour + 1, hour + 1, weights_digest(coef), NO_ACCURACY, done,
                                  self.now)  # fmt: skip
        if hour + 1 < self.hours:
            out.append(SetTimer(_hour_timer(hour + 1), self.p.hour_seconds))
        else:
            self.finished = True
        return [*out, *self.seal()]
