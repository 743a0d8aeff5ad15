"""Where records enter a Nagar node: signatures through the ledger's Verifier, then the
plan's rules. Refusals are counted in the node's gate by reason:

unknown_plan (no plan on chain, or a submission for another plan id), bad_plan (the plan
is inconsistent or differs from the node's own), wrong_step, wrong_role (not a selected
device, not the associated miner, not a miner, not the requester, not the PoS leader),
duplicate (a second submission of a device in a step), bad_samples (n_k < 1 or different
from the device's stats claim), implausible_samples (a gradient or update whose n_k
exceeds max_sample_rate x its local computation time, BlockFL's check), bad_epsilon
(not the plan's epsilon for the phase), over_budget (past epsilon_total), bad_payload,
too_many_txs (past block_size), bad_seal (PoW), bad_reward (rewards differ from the plan's
rule), bad_block_time.
"""

from __future__ import annotations

from collections.abc import Callable

from fedledger.consensus.selection import seal_ok
from fedledger.ledger.records import Block, BlockHeader, Transaction, record_id, short
from fedledger.protocols.kit.gate import Gate, Reject
from fedledger.protocols.nagar.chainstate import ChainState
from fedledger.protocols.nagar.messages import (
    GRAD,
    PLAN,
    PLAN_TX,
    SUBMIT_TX,
    UPDATE,
    FLPlan,
    StepRecord,
    Submission,
)
from fedledger.protocols.nagar.rules import (
    POW_CONTEXT,
    Step,
    associated_miner,
    phase_epsilon,
    plan_problems,
    pow_base,
    pow_target,
    rewards_of,
    selected,
)

EPS_SLACK = 1e-9


class Checks:
    def __init__(self, gate: Gate, node_of: Callable[[bytes], str | None], own: FLPlan) -> None:
        self.gate = gate
        self.node_of = node_of
        self.own = own  # the plan this node was configured with

    def fail(self, reason: str, detail: str) -> Reject:
        return self.gate.fail(reason, detail)

    def plan_tx(self, tx: object) -> FLPlan:
        if not isinstance(tx, Transaction) or tx.kind != PLAN_TX:
            raise self.fail("bad_payload", f"expected a {PLAN_TX} transaction")
        self.gate.verifier.check(tx)
        plan = tx.payload
        if not isinstance(plan, FLPlan):
            raise self.fail("bad_payload", f"plan payload is {type(plan).__name__}")
        if tx.sender != plan.requester or plan.requester != self.own.requester:
            raise self.fail("wrong_role", f"plan signed by {short(tx.sender)}, not the requester")
        problems = plan_problems(plan)
        if problems:
            raise self.fail("bad_plan", "; ".join(problems))
        if plan != self.own:
            raise self.fail("bad_plan", "the plan differs from this node's configured plan")
        return plan

    def submission(
        self, tx: object, state: ChainState, step: Step, tx_id: bytes | None = None
    ) -> Submission:
        """A device's submission for ``step`` under the plan on chain."""
        if not isinstance(tx, Transaction) or tx.kind != SUBMIT_TX:
            raise self.fail("bad_payload", f"expected a {SUBMIT_TX} transaction")
        self.gate.verifier.check(tx, tx_id)
        sub = tx.payload
        if not isinstance(sub, Submission):
            raise self.fail("bad_payload", f"payload is {type(sub).__name__}")
        plan = state.plan
        if plan is None or sub.plan_id != state.plan_id:
            raise self.fail("unknown_plan", f"submission for plan {short(sub.plan_id)}")
        if sub.step != step.index or sub.phase != step.phase:
            raise self.fail("wrong_step", f"{sub.phase} of step {sub.step} at {step.index}")
        if tx.sender not in selected(plan, state.rnd_seed, step):
            name = self.node_of(tx.sender) or short(tx.sender)
            raise self.fail("wrong_role", f"{name} is not selected in step {step.index}")
        n_k = sub.model.num_samples
        claimed = state.samples.get(tx.sender)
        if n_k < 1 or (claimed is not None and n_k != claimed):
            raise self.fail("bad_samples", f"n_k {n_k}, the check-in claimed {claimed}")
        want = phase_epsilon(plan, step.phase)
        if abs(sub.epsilon - want) > EPS_SLACK:
            raise self.fail("bad_epsilon", f"epsilon {sub.epsilon}, the plan says {want}")
        spent = state.epsilon.get(tx.sender, 0.0)
        if spent + sub.epsilon > plan.epsilon_total + EPS_SLACK:
            raise self.fail(
                "over_budget", f"{spent} + {sub.epsilon} > epsilon_total {plan.epsilon_total}"
            )
        if not sub.t_local >= 0:
            raise self.fail("bad_payload", f"t_local {sub.t_local}")
        vault = sub.vault
        if (vault is not None) != bool(plan.vault_threshold) or (
            vault is not None
            and (
                vault.threshold != plan.vault_threshold
                or len(vault.chunks) != len(plan.miners)
                or len(vault.shares) != len(plan.miners)
            )
        ):
            raise self.fail(
                "bad_vault",
                f"sealed manifest {vault!r:.60} against the plan's vault threshold "
                f"{plan.vault_threshold} over {len(plan.miners)} miners",
            )
        if sub.phase in (GRAD, UPDATE) and n_k > plan.max_sample_rate * sub.t_local:
            raise self.fail(
                "implausible_samples",
                f"n_k {n_k} in t_local {sub.t_local:g} s is over max_sample_rate "
                f"{plan.max_sample_rate:g} per second",
            )
        return sub

    def assoc_ok(self, state: ChainState, step: Step, device: bytes, miner: bytes) -> bool:
        assert state.plan is not None
        return associated_miner(state.plan, state.rnd_seed, step, device) == miner

    def block(self, block: object, parent: BlockHeader, state: ChainState, step: Step) -> None:
        """A candidate block for ``step`` on ``parent``, every rule re-checked."""
        if not isinstance(block, Block):
            raise self.fail("bad_payload", f"expected a Block, got {type(block).__name__}")
        self.gate.verifier.check_block(block, parent)
        rec = block.header.extra
        if not isinstance(rec, StepRecord):
            raise self.fail("bad_payload", "block extra is not a StepRecord")
        if rec.step != step.index or rec.phase != step.phase:
            raise self.fail("wrong_step", f"block of step {rec.step} at {step.index}")
        proposer = block.header.proposer
        if proposer not in self.own.miners:
            raise self.fail("wrong_role", f"proposer {short(proposer)} is no miner")
        if not block.header.timestamp >= parent.timestamp:
            raise self.fail("bad_block_time", f"timestamp {block.header.timestamp}")
        if len(block.transactions) > self.own.block_size:
            raise self.fail("too_many_txs", f"{len(block.transactions)} > block_size")
        ids = [record_id(tx) for tx in block.transactions]
        if ids != sorted(ids):
            raise self.fail("bad_payload", "transactions are not in id order")
        plan = state.plan
        if step.phase == PLAN:
            if len(block.transactions) > 1:
                raise self.fail("bad_payload", "a plan block holds only the plan")
            if block.transactions:
                plan = self.plan_tx(block.transactions[0])
            if rec.plan_id != (ids[0] if ids else b""):
                raise self.fail("unknown_plan", "the block names another plan id")
        else:
            if plan is None or rec.plan_id != state.plan_id:
                raise self.fail("unknown_plan", "block for an unknown plan")
            senders = set()
            for tx, tid in zip(block.transactions, ids, strict=True):
                self.submission(tx, state, step, tid)
                if tx.sender in senders:
                    raise self.fail("duplicate", f"two submissions of {short(tx.sender)}")
                senders.add(tx.sender)
        plan = plan or self.own
        if rec.rewards != rewards_of(plan, block.transactions, proposer):
            raise self.fail("bad_reward", "recorded rewards differ from the plan's rule")
        if plan.consensus == "pow":
            target = pow_target(plan, block.height, state.times)
            if not seal_ok(POW_CONTEXT, pow_base(block), rec.nonce, target):
                raise self.fail("bad_seal", f"nonce {rec.nonce} misses the target")
        elif proposer not in plan.miners:  # the elected miner or a backup (pos_ranking)
            raise self.fail("wrong_role", f"{short(proposer)} is not a miner of the plan")
