"""Parameters of the μDFL protocol (the ``protocol:`` block of a config).

Credits are exact integers in thousandths of a credit point (``1000`` = the paper's one
point), so Proof-of-Credit thresholds compare exactly on every node.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class MuDflParams(BaseModel):
    """μDFL (Xu and Chen, TNSM 2022) on one microchain, with the spec's choices where
    the paper is silent (docs/protocols/mudfl.md lists them).

    committee: K, validators per dynasty (drawn from the FL clients, the paper's 4..20).
    xi: PoC difficulty bits (Def. 2; the paper gives no value).
    epoch_size: R, blocks per finality epoch (checkpoints at height mod R == 0).
    slot: T_Δ in virtual seconds; one slot is 3 T_Δ (propose, fallback, vote).
    dynasty_epochs: epochs per dynasty (committee change after that many epochs).
    credit_init / credit_max / credit_reward / credit_penalty: c_i in thousandths of a
        point (paper: C_init = 1, C_max = 1.5, +1 per honest act, -1 per proven fault).
    deposit: security deposit sc_i of each committee member; slash_fraction: share of
        it slashed for equivocation or an invalid proof / credit claim.
    tx_fee / round_fee: fee per committed transaction; R_fee shared by a round's workers.
    max_block_txs: transactions per block at most (the paper's 1 MB block ~ 2,400).
    fallback_order: "asc" (spec: rank (height+1) mod K of the ascending address order)
        or "desc" (reference code: descending order).
    arbiter_timeout: finality slots without a quorum before the administrator decides
        (Rule 3).
    finality_wait: the aggregator waits for its round's model transactions to be in a
        "finalized" block (paper) or only a "committed" (justified) checkpoint.
    round_slots: slots the aggregator waits for a round's models at most.
    model_cipher: "aes-gcm" (default) or "pbkdf2-390k" (AES-GCM under a key stretched
        by the paper's 390,000-iteration PBKDF2-HMAC-SHA256, slow on purpose like its
        Fernet, for Table III).
    max_slots: the microchain stops after this many slots (a run's safety bound).
    randshare_deal_slots / randshare_reveal_slots: RandShare's deal and reveal windows at
        the end of a dynasty, in slots (rotation.py); a dynasty must span more than
        their sum + 2 blocks.
    score_samples: size of the aggregator's test set on which it scores every worker's
        model (s_i of the worker rewards, recorded on chain); 0 records no scores.
    fl: False runs only the microchain (no FL rounds: the run ends at ``max_slots``),
        for throughput benchmarks.
    load_tps: the load generator's offered rate, data transactions per second over all
        emitters (0: off; load.py). Emitters are the clients outside the current
        committee (all clients when every client is a validator).
    load_payload_bytes: padding per data transaction (default: a signed data
        transaction of about the paper's d_tx = 430 bytes).
    load_interval: seconds between two ticks of an emitter's load timer.
    compact_blocks: a proposer sends the committee its block's header and transaction
        ids only (relay.py); members rebuild it from their pools.
    poc_input: what hc is computed over: "txs" (the paper: H(pre_hash, mt_root, tx ids,
        proposer, credit, height, slot); a proposer can grind transaction subsets) or
        "vrf" (hardened: hc = beta of the proposer's RFC 9381 VRF proof over
        "mudfl/poc" || pre_hash || slot, the proof in the block header).
    grind_tries: candidate transaction lists the ``grind_poc`` fault tries per slot.
    """

    model_config = ConfigDict(extra="forbid")

    name: Literal["mudfl"] = "mudfl"
    committee: int = Field(4, ge=4, le=256)
    xi: int = Field(64, ge=8, le=256)
    epoch_size: int = Field(3, ge=1, le=1000)
    slot: float = Field(1.0, gt=0.0, le=3600.0)
    dynasty_epochs: int = Field(10, ge=1, le=100000)
    credit_init: int = Field(1000, ge=1)
    credit_max: int = Field(1500, ge=1)
    credit_reward: int = Field(1000, ge=0)
    credit_penalty: int = Field(1000, ge=0)
    deposit: float = Field(10.0, ge=0.0)
    slash_fraction: float = Field(1.0, ge=0.0, le=1.0)
    tx_fee: float = Field(0.0, ge=0.0)
    round_fee: float = Field(100.0, ge=0.0)
    max_block_txs: int = Field(2400, ge=1, le=100000)
    fallback_order: Literal["asc", "desc"] = "asc"
    arbiter_timeout: int = Field(3, ge=1, le=1000)
    finality_wait: Literal["finalized", "committed"] = "finalized"
    round_slots: int = Field(60, ge=1, le=100000)
    model_cipher: Literal["aes-gcm", "pbkdf2-390k"] = "aes-gcm"
    max_slots: int = Field(100000, ge=1)
    randshare_deal_slots: int = Field(3, ge=1, le=1000)
    randshare_reveal_slots: int = Field(3, ge=1, le=1000)
    score_samples: int = Field(200, ge=0, le=100000)
    fl: bool = True
    load_tps: float = Field(0.0, ge=0.0, le=1e6)
    load_payload_bytes: int = Field(185, ge=0, le=1_000_000)
    load_interval: float = Field(0.05, gt=0.0, le=10.0)
    compact_blocks: bool = False
    poc_input: Literal["txs", "vrf"] = "txs"
    grind_tries: int = Field(16, ge=1, le=100000)

    @model_validator(mode="after")
    def _credits(self) -> MuDflParams:
        if self.credit_init > self.credit_max:
            raise ValueError(
                f"credit_init {self.credit_init} exceeds credit_max {self.credit_max}; "
                "credits start at or below the cap"
            )
        if self.load_tps > 0 and self.load_interval > self.slot:
            raise ValueError(
                f"load_interval {self.load_interval} s is longer than the slot T_delta "
                f"{self.slot} s; the load generator must tick at least once per T_delta"
            )
        runs = self.randshare_deal_slots + self.randshare_reveal_slots + 2
        if self.epoch_size * self.dynasty_epochs <= runs:
            raise ValueError(
                f"a dynasty of epoch_size * dynasty_epochs = "
                f"{self.epoch_size * self.dynasty_epochs} blocks cannot hold RandShare's "
                f"deal + reveal windows + 2 = {runs} slots; need more blocks per dynasty"
            )
        return self
