"""Parameters of the ``nagar-vertical`` protocol (the ``protocol:`` block of a config)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class NagarVerticalParams(BaseModel):
    """Vertical FL (Hardy et al. 2017) between two parties and a coordinator.

    The config's ``rounds`` is the number of epochs over the aligned training rows;
    ``nodes.count`` must be 3 (party A, party B with the labels, coordinator C).

    intercept: vertical mode: party B (the labels) adds a bias column of ones to its own
        block, unpenalised like scikit-learn's intercept (Hardy et al. name none; False
        trains through the origin as printed).
    overlap: fraction of breast_cancer's samples both parties hold (the rest is split
        evenly between A only and B only); features_a: A's columns (B holds the rest).
    batch_size, lr, l2: mini-batch gradient descent on the Taylor loss.
    test_fraction: share of the aligned ids held out (a hash of the id and the seed).
    key_bits: the Paillier modulus; frac_bits: fixed-point fraction bits.
    decryptor: ``coordinator`` (Hardy et al.'s C holds the whole key; ``nodes.count`` 3) or
        ``committee`` (``committee`` key holders with t = ``threshold`` of them needed,
        threshold Paillier with proofs; ``nodes.count`` = 2 + ``committee``).
    mode: ``vertical`` (the above), ``transfer`` (federated transfer learning, Liu et al.
        2020: source A with labels, target B, coordinator C; ``nodes.count`` 3; ``rounds``
        = epochs, one full-batch step over the overlap each; keys ``overlap``,
        ``features_a``, ``dim`` (r), ``gamma``, ``l2`` (lambda), ``lr``, ``key_bits``,
        ``frac_bits``) or ``sharing`` (IoT differential data sharing: ``devices`` IoT nodes,
        a trainer and, with ``transport: shamir``, ``gateways`` gateway nodes of which
        ``gateway_threshold`` reconstruct; ``rounds`` = hours of readings, one each
        ``hour_seconds`` of virtual time; ``epsilon_reading``, ``epsilon_total``,
        ``per_work``; ``nodes.count`` = devices + 1 (+ gateways with shamir)).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    overlap: float = Field(0.8, gt=0.0, le=1.0)
    features_a: int = Field(15, ge=1, le=29)
    batch_size: int = Field(64, ge=1, le=512)
    lr: float = Field(0.3, gt=0.0)
    l2: float = Field(1e-3, ge=0.0)
    intercept: bool = True
    test_fraction: float = Field(0.25, gt=0.0, lt=1.0)
    key_bits: int = Field(1024, ge=256, le=4096, multiple_of=2)
    frac_bits: int = Field(16, ge=8, le=32)
    decryptor: Literal["coordinator", "committee"] = "coordinator"
    committee: int = Field(3, ge=1, le=16)
    threshold: int = Field(2, ge=1, le=16)
    mode: Literal["vertical", "transfer", "sharing"] = "vertical"
    # transfer mode (Liu et al. 2020)
    dim: int = Field(4, ge=1, le=64)
    gamma: float = Field(0.3, ge=0.0)
    # sharing mode (IoT differential data sharing)
    devices: int = Field(4, ge=1, le=1000)
    gateways: int = Field(3, ge=1, le=32)
    gateway_threshold: int = Field(2, ge=1, le=32)
    transport: Literal["sealed", "shamir"] = "shamir"
    epsilon_reading: float = Field(1.0, gt=0.0)
    epsilon_total: float = Field(100.0, gt=0.0)
    per_work: float = Field(1.0, ge=0.0)
    hour_seconds: float = Field(1.0, gt=0.0)

    @model_validator(mode="after")
    def _threshold_fits(self) -> NagarVerticalParams:
        if self.threshold > self.committee:
            raise ValueError(
                f"threshold={self.threshold} > committee={self.committee}; allowed: t <= m"
            )
        return self

    @model_validator(mode="after")
    def _mode_keys(self) -> NagarVerticalParams:
        from fedledger.protocols.nagar_vertical.mode_params import check_mode

        check_mode(self)
        return self
