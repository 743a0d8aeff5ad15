"""Parameters of the Nagar protocol (the ``protocol:`` block of a config).

The paper (a position paper) gives no values; every default here is ours (docs page)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fedledger.privacy.he.config import EncryptionSettings


class ConsortiumSettings(BaseModel):
    """Consortium mode (Sec. III-B): every device is an always-available member (all
    selected each round), consensus is PoS among the permissioned miners, and every
    vector blob is sealed (AES-GCM, chunks on the miners, the key Shamir-shared
    ``threshold`` of m = miners; :mod:`fedledger.protocols.nagar.vault`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: int = Field(2, ge=2)


class NagarParams(BaseModel):
    """Nagar: an FL plan on chain, F-SVRG or FedAvg, device-level Laplace DP, PoW/PoS miners.

    miners: miner nodes (the rest of ``nodes.count`` minus one requester are devices).
    devices_per_round: devices selected per round from chain randomness (0: all).
    min_updates: updates a round needs before devices apply it (k_min).
    optimizer: "fsvrg" (Algorithm 1), "dane" (Shamir et al. 2014: a full-gradient phase,
        then each device approximately solves DANE's local subproblem) or "fedavg" (local
        SGD, sample-weighted average).
    step_size: h of Algorithm 1 (DANE: its local gradient step); l2: lambda of f_i.
    local_epochs / local_batch_size: FedAvg's local epochs and mini-batch size (0: the
        train block's batch_size); one epoch at batch size 1 takes n_k SGD steps, as
        many as one F-SVRG pass.
    dane_eta / dane_mu / dane_iters: DANE's eta and mu and the local gradient steps on
        its subproblem.
    local_step / weighted / s_scaling / a_scaling: Konecny's four changes, each switchable
        (h / n_k; n_k / n weights; S_k on stochastic gradients; A on the aggregate).
    dp: "none" or "laplace" (clip to dp_clip in dp_norm, then Laplace noise, on every
        vector a device sends); epsilon_round: per round (F-SVRG: half on the gradient sum,
        half on the update); epsilon_total: a device's budget (basic composition).
    consensus: "pow" (race; the fewest attempts wins; difficulty retargeted every
        retarget_every blocks toward target_interval) or "pos" (stake-weighted lottery).
    pow_seconds_per_hash: virtual seconds per hash attempt; block_size: max txs per block.
    max_sample_rate: samples per second of local computation above which a gradient or
        update submission's n_k is implausible (BlockFL's timing check; the simulator's
        modelled cost is 1 / train_seconds_per_sample = 5,000 per second).
    reward_per_sample / reward_block / initial_stake: rewards (devices rho_d * n_k, the
        block's miner rho_m) and the miners' genesis stake (PoS).
    mine_at, select_at, step_length: seconds into a step (plan, stats, grad, update).
    encryption: None (vectors travel as plaintext blobs) or a Paillier block (scheme
        "paillier"; key_bits, threshold t, committee m = the first m miners in id order,
        frac_bits, clamp, packing, max_total_samples): devices encrypt what they send, the
        committee threshold-decrypts only each step's canonical aggregate of at least
        max(2, min_updates) devices.
    consortium: None (public mode) or a consortium block (see ConsortiumSettings).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    miners: int = Field(2, ge=1, le=64)
    devices_per_round: int = Field(0, ge=0)
    min_updates: int = Field(1, ge=1)
    optimizer: Literal["fsvrg", "dane", "fedavg"] = "fsvrg"
    step_size: float = Field(1.0, gt=0.0)
    l2: float = Field(0.0, ge=0.0)
    local_epochs: int = Field(1, ge=1)
    local_batch_size: int = Field(0, ge=0)
    dane_eta: float = Field(1.0, gt=0.0)
    dane_mu: float = Field(0.0, ge=0.0)
    dane_iters: int = Field(20, ge=1)
    local_step: bool = True
    weighted: bool = True
    s_scaling: bool = True
    a_scaling: bool = True
    dp: Literal["none", "laplace"] = "none"
    dp_norm: Literal["l1", "l2"] = "l1"
    dp_clip: float = Field(1.0, gt=0.0)
    epsilon_round: float = Field(1.0, gt=0.0)
    epsilon_total: float = Field(100.0, gt=0.0)
    consensus: Literal["pow", "pos"] = "pow"
    pow_difficulty: int = Field(6, ge=0, le=20)
    pow_seconds_per_hash: float = Field(0.01, gt=0.0)
    retarget_every: int = Field(4, ge=1)
    target_interval: float = Field(60.0, gt=0.0)
    block_size: int = Field(256, ge=1)
    max_sample_rate: float = Field(1e6, gt=0.0)
    reward_per_sample: float = Field(0.01, ge=0.0)
    reward_block: float = Field(1.0, ge=0.0)
    initial_stake: float = Field(1.0, gt=0.0)
    mine_at: float = Field(30.0, gt=0.0)
    select_at: float = Field(50.0, gt=0.0)
    step_length: float = Field(60.0, gt=0.0)
    encryption: EncryptionSettings | None = None
    consortium: ConsortiumSettings | None = None

    @model_validator(mode="after")
    def _consistent(self) -> NagarParams:
        times = [self.mine_at, self.select_at, self.step_length]
        if times != sorted(set(times)) or len(set(times)) != 3:
            raise ValueError(f"need mine_at < select_at < step_length, got {times}")
        if self.dp == "laplace" and self.epsilon_total < self.epsilon_round:
            raise ValueError(
                f"epsilon_total={self.epsilon_total} is below epsilon_round="
                f"{self.epsilon_round}: no round could run; allowed epsilon_total >= epsilon_round"
            )
        enc = self.encryption
        if enc is not None:
            if enc.scheme != "paillier":
                raise ValueError(f"encryption.scheme={enc.scheme!r}; allowed: paillier")
            if enc.committee > self.miners:
                raise ValueError(
                    f"encryption.committee={enc.committee} exceeds miners={self.miners}; "
                    "allowed: committee <= miners (the committee is the first miners)"
                )
        con = self.consortium
        if con is not None:
            if self.consensus != "pos" or self.devices_per_round != 0:
                raise ValueError(
                    f"consortium mode with consensus={self.consensus!r}, devices_per_round="
                    f"{self.devices_per_round}; allowed: consensus pos, devices_per_round 0 "
                    "(members are always available)"
                )
            if self.miners < 3 or con.threshold > self.miners:
                raise ValueError(
                    f"consortium.threshold={con.threshold} with miners={self.miners}; allowed: "
                    "miners >= 3 and 2 <= threshold <= miners"
                )
        return self

    @property
    def scaled(self) -> bool:
        """Whether the F-SVRG statistics phase runs (S_k or A in use)."""
        return self.optimizer == "fsvrg" and (self.s_scaling or self.a_scaling)
