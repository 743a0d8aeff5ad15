"""The training job a selected device runs in a step (pure: no IO, no node state).

stats -> ``feature_counts``; grad -> ``grad_sum``; update -> the plan's optimizer:
``fsvrg`` (Algorithm 1's local pass from the round's full gradient and S_k), ``dane``
(DANE's local subproblem from the round's full gradient) or ``fedavg`` (local SGD for
``local_epochs`` epochs of ``local_batch_size`` mini-batches)."""

from __future__ import annotations

import dataclasses

from fedledger.learning.jobs import TrainJob, TrainSettings
from fedledger.protocols.nagar.fold import ModelState
from fedledger.protocols.nagar.messages import GRAD, STATS
from fedledger.protocols.nagar.params import NagarParams
from fedledger.protocols.nagar.rules import Step
from fedledger.seeding import derive_seed


def train_job(
    train: TrainSettings, p: NagarParams, model: ModelState, seed: int, node_id: str, step: Step
) -> TrainJob:
    """The job of ``step`` for device ``node_id`` whose model state is ``model``."""
    seed = derive_seed(seed, "nagar-job", node_id, step.index)
    w = model.weights
    if step.phase == STATS:
        settings = dataclasses.replace(train, solver="feature_counts", solver_params={})
        return TrainJob(w, settings, seed, shared=False)
    if step.phase == GRAD:
        settings = dataclasses.replace(train, solver="grad_sum", solver_params={"l2": p.l2})
        return TrainJob(w, settings, seed, tag=f"grad-{step.round}", shared=False)
    if p.optimizer == "fedavg":
        batch = p.local_batch_size or train.batch_size
        settings = dataclasses.replace(train, epochs=p.local_epochs, batch_size=batch)
        return TrainJob(w, settings, seed, tag=f"round-{step.round}")
    full_grad = tuple(float(v) for v in model.full_grad)
    if p.optimizer == "dane":
        dane = {
            "h": p.step_size,
            "l2": p.l2,
            "eta": p.dane_eta,
            "mu": p.dane_mu,
            "iters": p.dane_iters,
            "full_grad": full_grad,
        }
        settings = dataclasses.replace(train, solver="dane", solver_params=dane)
        return TrainJob(w, settings, seed, tag=f"round-{step.round}")
    scaling = model.s_diag if p.s_scaling else None
    params = {
        "h": p.step_size,
        "l2": p.l2,
        "local_step": p.local_step,
        "full_grad": full_grad,
        "scaling": None if scaling is None else tuple(float(v) for v in scaling),
    }
    settings = dataclasses.replace(train, solver="fsvrg", solver_params=params)
    return TrainJob(w, settings, seed, tag=f"round-{step.round}")
