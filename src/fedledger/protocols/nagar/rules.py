"""Nagar's rules as pure functions: the step sequence, the plan and its validation,
device selection and associated miners from chain randomness, epsilon per phase,
rewards, the PoW base and target (retargeted from block times) and the PoS lottery."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fedledger.consensus.committee import seeded_choice
from fedledger.consensus.selection import Retarget, stake_lottery, target_of_bits
from fedledger.ledger.records import Block, Transaction
from fedledger.protocols.nagar.messages import (
    GRAD,
    PLAN,
    REWARD_BLOCK,
    REWARD_DATA,
    STATS,
    UPDATE,
    FLPlan,
    Reward,
    Submission,
)
from fedledger.protocols.nagar.params import NagarParams
from fedledger.seeding import derive_seed

POW_CONTEXT = b"fedledger/nagar/pow"
POS_CONTEXT = b"fedledger/nagar/pos"
#: the optimizers whose rounds start with a full-gradient (grad) phase
FULL_GRADIENT = ("fsvrg", "dane")


@dataclass(frozen=True)
class Step:
    """Step ``index`` (1-based) is ``phase`` of FL round ``round`` (0: plan and stats)."""

    index: int
    round: int
    phase: str


def steps_of(params: NagarParams, rounds: int) -> tuple[Step, ...]:
    """plan, [stats], then per round [grad,] update."""
    phases: list[tuple[int, str]] = [(0, PLAN)]
    if params.scaled:
        phases.append((0, STATS))
    for r in range(1, rounds + 1):
        if params.optimizer in FULL_GRADIENT:
            phases.append((r, GRAD))
        phases.append((r, UPDATE))
    return tuple(Step(i + 1, r, p) for i, (r, p) in enumerate(phases))


def weights_digest(weights: np.ndarray) -> bytes:
    return hashlib.sha256(np.asarray(weights, dtype="<f4").tobytes()).digest()


def make_plan(
    params: NagarParams,
    requester: bytes,
    model: str,
    initial: np.ndarray,
    rounds: int,
    devices: tuple[bytes, ...],
    miners: tuple[bytes, ...],
    he_key: bytes = b"",
) -> FLPlan:
    """The plan of ``params``; under encryption ``he_key`` is the committee key's digest
    and the committee the first ``encryption.committee`` miners by address order."""
    p = params
    enc = p.encryption
    committee = tuple(sorted(miners)[: enc.committee]) if enc is not None else ()
    return FLPlan(
        requester=requester,
        model=model,
        num_weights=int(np.size(initial)),
        initial_weights=weights_digest(initial),
        rounds=rounds,
        optimizer=p.optimizer,
        step_size=p.step_size,
        l2=p.l2,
        local_epochs=p.local_epochs,
        switches=(p.local_step, p.weighted, p.s_scaling, p.a_scaling),
        devices=devices,
        miners=miners,
        devices_per_round=p.devices_per_round,
        min_updates=p.min_updates,
        dp=p.dp,
        dp_norm=p.dp_norm,
        dp_clip=p.dp_clip,
        epsilon_round=p.epsilon_round,
        epsilon_total=p.epsilon_total,
        consensus=p.consensus,
        pow_difficulty=p.pow_difficulty,
        retarget_every=p.retarget_every,
        target_interval=p.target_interval,
        block_size=p.block_size,
        reward_per_sample=p.reward_per_sample,
        reward_block=p.reward_block,
        initial_stake=p.initial_stake,
        he_scheme="paillier" if enc is not None else "none",
        he_threshold=enc.threshold if enc is not None else 0,
        he_committee=committee,
        he_key=he_key,
        max_sample_rate=p.max_sample_rate,
        local_batch_size=p.local_batch_size,
        dane=(p.dane_eta, p.dane_mu, p.dane_iters),
        vault_threshold=p.consortium.threshold if p.consortium is not None else 0,
    )


def plan_problems(plan: FLPlan) -> list[str]:
    """What makes a plan inconsistent (empty: none), each naming the value and the rule."""
    out = []
    if plan.optimizer not in ("fsvrg", "dane", "fedavg"):
        out.append(f"optimizer {plan.optimizer!r}; allowed fsvrg, dane, fedavg")
    eta, mu, iters = plan.dane
    if plan.optimizer == "dane" and not (eta > 0 and mu >= 0 and iters >= 1):
        out.append(f"dane (eta, mu, iters) {plan.dane}; allowed eta > 0, mu >= 0, iters >= 1")
    if plan.rounds < 1 or plan.num_weights < 1:
        out.append(f"rounds {plan.rounds} and num_weights {plan.num_weights} must be >= 1")
    if not plan.devices or not plan.miners:
        out.append("a plan needs at least one device and one miner")
    if plan.devices_per_round > len(plan.devices):
        out.append(f"devices_per_round {plan.devices_per_round} > {len(plan.devices)} devices")
    selected = plan.devices_per_round or len(plan.devices)
    if plan.min_updates > selected:
        out.append(f"min_updates {plan.min_updates} > {selected} devices per round")
    if plan.dp not in ("none", "laplace") or plan.dp_norm not in ("l1", "l2"):
        out.append(f"dp {plan.dp!r} / norm {plan.dp_norm!r}; allowed none|laplace, l1|l2")
    if plan.dp == "laplace" and not plan.epsilon_round <= plan.epsilon_total:
        out.append(f"epsilon_total {plan.epsilon_total} < epsilon_round {plan.epsilon_round}")
    if plan.consensus not in ("pow", "pos"):
        out.append(f"consensus {plan.consensus!r}; allowed pow, pos")
    if plan.block_size < len(plan.devices) and plan.block_size < selected:
        out.append(f"block_size {plan.block_size} cannot hold {selected} submissions")
    if not plan.max_sample_rate > 0:
        out.append(f"max_sample_rate {plan.max_sample_rate} must be > 0")
    if plan.step_size <= 0 or plan.dp_clip <= 0:
        out.append(f"step_size {plan.step_size} and dp_clip {plan.dp_clip} must be > 0")
    m = len(plan.miners)
    if plan.vault_threshold and not (m >= 3 and 2 <= plan.vault_threshold <= m):
        out.append(f"vault threshold {plan.vault_threshold} of {len(plan.miners)} miners")
    if plan.vault_threshold and plan.consensus != "pos":
        out.append(f"consortium mode with consensus {plan.consensus!r}; allowed pos")
    if plan.he_scheme not in ("none", "paillier"):
        out.append(f"he_scheme {plan.he_scheme!r}; allowed none, paillier")
    if plan.he_scheme == "paillier":
        members = plan.he_committee
        if not 1 <= plan.he_threshold <= len(members):
            out.append(f"threshold {plan.he_threshold} of a {len(members)}-member committee")
        if not set(members) <= set(plan.miners):
            out.append("the decryption committee must be miners")
        if selected < 2:
            out.append(f"{selected} device per round: an aggregate of one is never decrypted")
        if len(plan.he_key) != 32:
            out.append("he_key must be the 32-byte digest of the committee key")
    return out


def phase_epsilon(plan: FLPlan, phase: str) -> float:
    """The epsilon a device spends on a submission of ``phase`` (basic composition)."""
    if plan.dp != "laplace" or phase not in (GRAD, UPDATE):
        return 0.0
    return plan.epsilon_round / 2 if plan.optimizer in FULL_GRADIENT else plan.epsilon_round


def chain_seed(seed: int, plan_block: bytes) -> int:
    """The randomness every node derives from the block that holds the plan."""
    return derive_seed(seed, "nagar-chain", plan_block.hex())


def selected(plan: FLPlan, rnd_seed: int, step: Step) -> tuple[bytes, ...]:
    """The devices of ``step`` (all for stats; a seeded draw per round otherwise)."""
    devices = tuple(sorted(plan.devices))
    if step.phase == STATS or not plan.devices_per_round:
        return devices
    rng = np.random.default_rng(derive_seed(rnd_seed, "nagar-select", step.round))
    pick = rng.choice(len(devices), size=plan.devices_per_round, replace=False)
    return tuple(devices[int(i)] for i in sorted(pick))


def associated_miner(plan: FLPlan, rnd_seed: int, step: Step, device: bytes) -> bytes:
    """The miner a device sends its submission to in ``step`` (drawn at random)."""
    miners = [m.hex() for m in sorted(plan.miners)]
    return bytes.fromhex(seeded_choice(miners, rnd_seed, "nagar-assoc", step.index, device.hex()))


def rewards_of(plan: FLPlan, txs: Sequence[Transaction], proposer: bytes) -> tuple[Reward, ...]:
    """The block's rewards: rho_d * q * n_k per verified submission (q = 1: every one in a
    valid block passed verification) and rho_m to the block's miner."""
    out = []
    for tx in txs:
        sub = tx.payload
        if isinstance(sub, Submission) and sub.phase in (GRAD, UPDATE):
            amount = plan.reward_per_sample * sub.model.num_samples
            out.append(Reward(tx.sender, REWARD_DATA, amount))
    out.append(Reward(proposer, REWARD_BLOCK, plan.reward_block))
    return tuple(out)


def pow_base(block: Block) -> bytes:
    """What a PoW nonce seals: parent, height, transactions root and proposer."""
    h = block.header
    return h.parent + h.height.to_bytes(8, "big") + h.tx_root + h.proposer


def pow_target(plan: FLPlan, height: int, times: Sequence[float]) -> int:
    """The target at ``height`` from the initial difficulty and the earlier blocks' times."""
    initial = target_of_bits(plan.pow_difficulty)
    rule = Retarget(plan.target_interval, plan.retarget_every)
    return rule.target_at(height, initial, times)


def pos_leader(plan: FLPlan, stakes: Mapping[bytes, float], parent: bytes, height: int) -> bytes:
    """The miner elected at ``height``: a lottery by stake, seeded by the parent hash."""
    return pos_ranking(plan, stakes, parent, height)[0]


def pos_ranking(
    plan: FLPlan, stakes: Mapping[bytes, float], parent: bytes, height: int
) -> tuple[bytes, ...]:
    """Every miner in proposing order at ``height``: the elected miner, then its backups,
    each drawn by the same stake lottery from the miners not drawn yet (draw k > 0 under
    its own context). A backup proposes only when no better-ranked block has come."""
    table = {m.hex(): plan.initial_stake + stakes.get(m, 0.0) for m in plan.miners}
    seed = int.from_bytes(hashlib.sha256(POS_CONTEXT + parent).digest()[:8], "big")
    order: list[bytes] = []
    while table:
        context = POS_CONTEXT + (b"/backup/" + bytes([len(order)]) if order else b"")
        drawn = stake_lottery(table, seed, height, context)
        order.append(bytes.fromhex(drawn))
        del table[drawn]
    return tuple(order)
