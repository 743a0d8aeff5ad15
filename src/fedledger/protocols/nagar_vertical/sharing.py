"""Differential data sharing (Nagar, Section IV): IoT devices share LDP readings with a trainer.

The paper names this in its title but never defines it; our reading (see
docs/protocols/nagar-vertical.md):

- An IoT device holds sensor readings (temperature, humidity) arriving over time; it does
  not train. Before a reading leaves it, each feature is clipped to its public range
  ``[low, high]`` and gets Laplace noise of scale ``(high - low) / eps_feature`` (the
  range is the sensitivity of one reading: replace-one neighbours), with the per-reading
  epsilon split evenly over the features (basic composition). The device's budget
  (``epsilon_total``, from the plan) is kept by a basic-composition accountant; a reading
  that would exceed it is not shared (counted as ``refused_budget``).
- Transport, two modes: ``sealed`` (an X25519 sealed box to the trainer's public key, so
  relays see ciphertext only) or ``shamir`` (the fixed-point readings split into t-of-m
  Shamir shares over GF(2**127 - 1), one share to each gateway, so fewer than t gateways
  see values uniformly distributed whatever the reading).
- The trainer decrypts or reconstructs the (noised) readings and fits each feature's daily
  cycle ``a + b sin(2 pi h / 24) + c cos(2 pi h / 24)`` by least squares; it is rewarded
  ``per_work`` per reading it processed (Nagar: rewarded "for computational power").
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

import numpy as np
from nacl.public import PrivateKey, PublicKey, SealedBox

from fedledger.crypto.shamir import Share, reconstruct, split
from fedledger.errors import ConfigError
from fedledger.privacy.dp.accountants import BasicAccountant, make_accountant

PRIME = 2**127 - 1
FRAC_BITS = 16
_READING = struct.Struct(">II")  # device, hour; then the feature values as float64


@dataclass(frozen=True)
class FeatureRange:
    name: str
    low: float
    high: float

    @property
    def width(self) -> float:
        return self.high - self.low


FEATURES = (FeatureRange("temperature", -10.0, 40.0), FeatureRange("humidity", 0.0, 100.0))


@dataclass(frozen=True)
class SharingPlan:
    """The plan's data-sharing section (ours: the paper names no value)."""

    epsilon_reading: float = 1.0
    epsilon_total: float = 100.0
    transport: str = "shamir"
    gateways: int = 3
    threshold: int = 2
    per_work: float = 1.0
    features: tuple[FeatureRange, ...] = FEATURES

    def __post_init__(self) -> None:
        if not self.epsilon_reading > 0:
            raise ConfigError("epsilon_reading", f"{self.epsilon_reading}; allowed: > 0 or inf")
        if not self.epsilon_total > 0:
            raise ConfigError("epsilon_total", f"{self.epsilon_total}; allowed: > 0 or inf")
        if self.transport not in ("sealed", "shamir"):
            raise ConfigError("transport", f"{self.transport!r}; allowed: sealed, shamir")
        if not 1 <= self.threshold <= self.gateways:
            raise ConfigError("threshold", f"t={self.threshold}, m={self.gateways}; 1 <= t <= m")

    @property
    def epsilon_feature(self) -> float:
        return self.epsilon_reading / len(self.features)


def diurnal(hours: np.ndarray, offset: float) -> np.ndarray:
    """The noise-free daily cycle of (temperature, humidity) for a device."""
    phase = 2 * math.pi * (hours - 9.0) / 24.0
    temperature = 18.0 + offset + 7.0 * np.sin(phase)
    humidity = 60.0 - 2 * offset - 18.0 * np.sin(phase)
    return np.stack([temperature, humidity], 1)


def sensor_streams(devices: int, hours: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded streams (devices x hours x 2) and each device's offset (its location)."""
    rng = np.random.default_rng(seed)
    offsets = rng.normal(0.0, 2.0, size=devices)
    t = np.arange(hours, dtype=np.float64)
    streams = np.stack([diurnal(t, o) for o in offsets])
    streams = streams + rng.normal(0.0, [0.8, 3.0], size=streams.shape)  # sensor noise
    return streams, offsets


@dataclass
class IotDevice:
    """A data holder that privatises each reading before it leaves."""

    index: int
    stream: np.ndarray
    plan: SharingPlan
    rng: np.random.Generator
    accountant: BasicAccountant = field(init=False)
    refused_budget: int = 0

    def __post_init__(self) -> None:
        acc = make_accountant("basic")
        assert isinstance(acc, BasicAccountant)
        self.accountant = acc

    @property
    def epsilon_spent(self) -> float:
        return self.accountant.spent(0.0).epsilon

    def privatise(self, raw: np.ndarray) -> np.ndarray:
        """Clip each feature to its range, then add Laplace noise of scale width / eps."""
        lows = np.array([f.low for f in self.plan.features])
        highs = np.array([f.high for f in self.plan.features])
        clipped = np.clip(raw, lows, highs)
        if math.isinf(self.plan.epsilon_reading):
            return clipped
        scales = (highs - lows) / self.plan.epsilon_feature
        return clipped + self.rng.laplace(0.0, scales)

    def reading(self, hour: int) -> np.ndarray | None:
        """The privatised reading of ``hour``, or None when the budget forbids it."""
        eps = self.plan.epsilon_reading
        if self.epsilon_spent + eps > self.plan.epsilon_total * (1 + 1e-12):
            self.refused_budget += 1
            return None
        self.accountant.spend(eps)
        return self.privatise(self.stream[hour])


def _encode(value: float) -> int:
    return round(value * 2**FRAC_BITS) % PRIME


def _decode(value: int) -> float:
    signed = value - PRIME if value > PRIME // 2 else value
    return signed / 2**FRAC_BITS


@dataclass(frozen=True)
class GatewayShare:
    """What one gateway receives for one reading: its Shamir share of each feature."""

    device: int
    hour: int
    x: int
    ys: tuple[int, ...]


@dataclass(frozen=True)
class SealedReading:
    """A reading sealed to the trainer (relays see only this)."""

    ciphertext: bytes


def seal(trainer: PublicKey, device: int, hour: int, values: np.ndarray) -> SealedReading:
    body = _READING.pack(device, hour) + np.asarray(values, dtype=">f8").tobytes()
    return SealedReading(SealedBox(trainer).encrypt(body))


def share_reading(
    device: int, hour: int, values: np.ndarray, plan: SharingPlan, rng: np.random.Generator
) -> list[GatewayShare]:
    """One share per gateway; any ``threshold`` of them give the values back."""
    def randbelow(bound: int) -> int:
        return int.from_bytes(rng.bytes(24), "big") % bound

    per_feature = [
        split(_encode(float(v)), plan.threshold, plan.gateways, PRIME, randbelow) for v in values
    ]
    return [
        GatewayShare(device, hour, g + 1, tuple(shares[g].y for shares in per_feature))
        for g in range(plan.gateways)
    ]


def open_sealed(key: PrivateKey, ciphertext: bytes, features: int) -> tuple[int, int, np.ndarray]:
    """(device, hour, values) of a sealed reading; CryptoError if the box does not open,
    ConfigError if its body has the wrong length."""
    body = SealedBox(key).decrypt(ciphertext)
    if len(body) != _READING.size + 8 * features:
        raise ConfigError("reading", f"{len(body)} bytes; expected {_READING.size + 8 * features}")
    device, hour = _READING.unpack_from(body)
    return device, hour, np.frombuffer(body[_READING.size :], dtype=">f8").astype(np.float64)


def reconstruct_values(shares: dict[int, tuple[int, ...]], t: int) -> np.ndarray:
    """The feature values from gateway index -> per-feature shares (ShamirError if fewer
    than ``t``, or if shares beyond the first ``t`` are off their polynomial)."""
    xs = list(shares)
    features = len(shares[xs[0]])
    return np.array([
        _decode(reconstruct([Share(x, shares[x][k]) for x in xs], t, PRIME))
        for k in range(features)
    ])  # fmt: skip


@dataclass
class Trainer:
    """Receives readings, fits each feature's daily cycle, counts its work."""

    plan: SharingPlan
    key: PrivateKey
    readings: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)
    work: int = 0

    def receive_sealed(self, msg: SealedReading) -> None:
        device, hour, values = open_sealed(self.key, msg.ciphertext, len(self.plan.features))
        self.readings[(device, hour)] = values

    def receive_shares(self, shares: list[GatewayShare]) -> None:
        """Reconstruct from (at least ``threshold``) gateways' shares of one reading."""
        first = shares[0]
        if any((s.device, s.hour) != (first.device, first.hour) for s in shares):
            raise ConfigError("shares", "shares of different readings cannot be combined")
        got = {s.x: s.ys for s in shares}
        self.readings[(first.device, first.hour)] = reconstruct_values(got, self.plan.threshold)

    def fit(self) -> np.ndarray:
        """Least-squares coefficients (3 x features) of the daily cycle over all readings;
        ``work`` counts each reading processed once, however often the trainer refits."""
        coef = fit_cycle(self.readings)
        self.work = len(self.readings)
        return coef

    @property
    def reward(self) -> float:
        return self.plan.per_work * self.work


def _design(hours: np.ndarray) -> np.ndarray:
    phase = 2 * math.pi * (hours - 9.0) / 24.0
    return np.stack([np.ones_like(hours), np.sin(phase), np.cos(phase)], 1)


def fit_cycle(readings: dict[tuple[int, int], np.ndarray]) -> np.ndarray:
    """Least-squares ``a + b sin + c cos`` of the hour (3 x features), readings in key order."""
    keys = sorted(readings)
    if not keys:
        raise ConfigError("trainer", "no reading arrived (every device out of budget?)")
    hours = np.array([h for _, h in keys], dtype=np.float64)
    target = np.stack([readings[k] for k in keys])
    coef, *_ = np.linalg.lstsq(_design(hours), target, rcond=None)
    return np.asarray(coef)


def cycle_rmse(coef: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per feature, the RMSE over 24 hours of the fitted cycle against the devices' mean
    noise-free cycle (the evaluation's ground truth, never a node's input)."""
    grid = np.arange(24, dtype=np.float64)
    truth = np.mean([diurnal(grid, o) for o in offsets], axis=0)
    return np.asarray(np.sqrt(np.mean((_design(grid) @ coef - truth) ** 2, axis=0)))


def device_rngs(seed: int, device: int) -> tuple[np.random.Generator, np.random.Generator]:
    """A device's two seeded streams: its Laplace noise and its Shamir coefficients."""
    return np.random.default_rng([seed, 2, device]), np.random.default_rng([seed, 3, device])


def trainer_key(seed: int) -> PrivateKey:
    """The trainer's X25519 key (the simulation dealer's, from the seed)."""
    return PrivateKey(np.random.default_rng([seed, 1]).bytes(32))


@dataclass(frozen=True)
class SharingResult:
    coef: np.ndarray
    rmse: np.ndarray  # per feature, against the devices' mean noise-free cycle
    shared: int
    refused_budget: int
    epsilon_spent: tuple[float, ...]
    reward: float
    gateway_views: tuple[tuple[GatewayShare, ...], ...]
    relay_view: tuple[SealedReading, ...]


def run_sharing(plan: SharingPlan, devices: int, hours: int, seed: int) -> SharingResult:
    """Devices stream ``hours`` readings to one trainer; the trainer fits the daily cycle."""
    streams, offsets = sensor_streams(devices, hours, seed)
    rngs = [device_rngs(seed, d) for d in range(devices)]
    iot = [IotDevice(d, streams[d], plan, rngs[d][0]) for d in range(devices)]
    trainer = Trainer(plan, trainer_key(seed))
    gateways: list[list[GatewayShare]] = [[] for _ in range(plan.gateways)]
    relay: list[SealedReading] = []
    for hour in range(hours):
        for dev in iot:
            values = dev.reading(hour)
            if values is None:
                continue
            if plan.transport == "sealed":
                msg = seal(trainer.key.public_key, dev.index, hour, values)
                relay.append(msg)
                trainer.receive_sealed(msg)
            else:
                shares = share_reading(dev.index, hour, values, plan, rngs[dev.index][1])
                for g, s in enumerate(shares):
                    gateways[g].append(s)
                trainer.receive_shares(shares[: plan.threshold])
    coef = trainer.fit()
    rmse = cycle_rmse(coef, offsets)
    return SharingResult(
        coef, rmse, len(trainer.readings), sum(d.refused_budget for d in iot),
        tuple(d.epsilon_spent for d in iot), trainer.reward,
        tuple(tuple(g) for g in gateways), tuple(relay),
    )  # fmt: skip
