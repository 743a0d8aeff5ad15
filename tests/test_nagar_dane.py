"""DANE (Shamir, Srebro, Zhang 2014) as Nagar's optimizer option: the registered routine
against a direct numpy implementation on a small convex problem (L2-regularized softmax
regression), step for step, and DANE end to end in the simulator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fedledger.assembly.config import parse_config
from fedledger.experiment.runner import run_experiment
from fedledger.learning.dane import dane_local
from fedledger.learning.fsvrg import FsvrgError, gradient_sum
from fedledger.learning.jobs import TrainSettings
from fedledger.learning.models import mlp
from fedledger.learning.solvers import solver
from fedledger.learning.train import Learner  # noqa: F401  (the learner the routines run in)
from fedledger.protocols.nagar.params import NagarParams
from fedledger.protocols.nagar.rules import FULL_GRADIENT, steps_of

D, C, L2, H, ETA, MU, ITERS = 5, 3, 0.05, 0.5, 1.0, 0.1, 7


def _grad(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean over (x, y) of grad CE(softmax(W x + b), y) + L2 w, w = [W.ravel(), b]."""
    W, b = w[: C * D].reshape(C, D), w[C * D :]
    z = x @ W.T + b
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    return np.concatenate([(p.T @ x).ravel(), p.sum(axis=0)]) / len(y) + L2 * w


def _problem() -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(5)
    xs = [rng.normal(loc=k, size=(n, D)) for k, n in enumerate((9, 14, 6))]
    ys = [rng.integers(0, C, size=len(x)) for x in xs]
    return xs, ys


def _reference(xs, ys, w: np.ndarray, rounds: int) -> np.ndarray:
    """DANE written out directly (numpy, float64): full gradient, local subproblems by
    ITERS gradient steps of size H, sample-weighted average."""
    n_ks = np.array([len(x) for x in xs], dtype=float)
    for _ in range(rounds):
        g = sum(n * _grad(w, x, y) for n, x, y in zip(n_ks, xs, ys, strict=True)) / n_ks.sum()
        wks = []
        for x, y in zip(xs, ys, strict=True):
            shift = ETA * g - _grad(w, x, y)
            wk = w.copy()
            for _ in range(ITERS):
                wk = wk - H * (_grad(wk, x, y) + shift + MU * (wk - w))
            wks.append(wk)
        w = sum(n * wk for n, wk in zip(n_ks, wks, strict=True)) / n_ks.sum()
    return w


def test_dane_matches_numpy_step_for_step() -> None:
    xs, ys = _problem()
    module = mlp((1, 1, D), C, [])
    w0 = np.random.default_rng(1).normal(scale=0.1, size=C * D + C)
    n_ks = [len(x) for x in xs]
    w = w0.copy()
    for r in range(3):
        g = sum(gradient_sum(module, w, x, y, L2)[0] for x, y in zip(xs, ys, strict=True))
        g = g / sum(n_ks)
        wks = []
        for x, y in zip(xs, ys, strict=True):
            spec = solver(
                "dane",
                {"h": H, "l2": L2, "eta": ETA, "mu": MU, "iters": ITERS, "full_grad": g.tolist()},
            )
            assert spec.routine is not None
            res = spec.routine(module, w.astype(np.float32), x, y, TrainSettings(), r)
            wks.append(res.weights.astype(np.float64))
        w = sum(n * wk for n, wk in zip(n_ks, wks, strict=True)) / sum(n_ks)
        np.testing.assert_allclose(w, _reference(xs, ys, w0.copy(), r + 1), atol=1e-4)
    assert not np.allclose(w, w0, atol=1e-2)


def test_dane_with_one_device_and_eta_1_is_plain_gradient_descent_from_w() -> None:
    """With a single device grad phi = grad phi_k: the shift cancels the anchor gradient,
    so mu = 0 leaves gradient descent on phi_k (the algebra of the subproblem)."""
    xs, ys = _problem()
    module = mlp((1, 1, D), C, [])
    w0 = np.zeros(C * D + C)
    g = _grad(w0, xs[0], ys[0])
    got = dane_local(module, w0, g, xs[0], ys[0], h=H, l2=L2, eta=1.0, mu=0.0, iters=4)
    want = w0.copy()
    for _ in range(4):
        want = want - H * _grad(want, xs[0], ys[0])
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_dane_rejects_bad_inputs() -> None:
    module = mlp((1, 1, D), C, [])
    x, y = np.ones((2, D)), np.zeros(2, int)
    with pytest.raises(FsvrgError, match="must match"):
        dane_local(module, np.zeros(18), np.zeros(4), x, y, h=1, l2=0, eta=1, mu=0, iters=1)
    with pytest.raises(FsvrgError, match="iters"):
        dane_local(module, np.zeros(18), np.zeros(18), x, y, h=1, l2=0, eta=1, mu=0, iters=0)


def test_dane_rounds_have_a_full_gradient_phase() -> None:
    assert "dane" in FULL_GRADIENT
    phases = [s.phase for s in steps_of(NagarParams(optimizer="dane"), 2)]
    assert phases == ["plan", "grad", "update", "grad", "update"]


def test_dane_runs_end_to_end_in_the_simulator(tmp_path: Path) -> None:
    cfg = {
        "name": "dane",
        "seed": 1,
        "rounds": 3,
        "data": {"dataset": "digits", "partition": "iid"},
        "model": {"name": "mlp", "hidden": []},
        "train": {"epochs": 1, "lr": 0.05, "batch_size": 16},
        "protocol": {
            "name": "nagar",
            "miners": 2,
            "optimizer": "dane",
            "step_size": 0.5,
            "dane_mu": 0.1,
            "dane_iters": 10,
            "l2": 0.001,
            "pow_difficulty": 4,
        },
        "nodes": {"count": 7},
        "output": {"plots": False},
    }
    result = run_experiment(parse_config(cfg), tmp_path / "dane")
    nagar = result.summary["nagar"]
    assert nagar["device_accuracy"] > 0.8, nagar
    lines = (tmp_path / "dane" / "metrics.jsonl").read_text().splitlines()
    names = [json.loads(line)["name"] for line in lines]
    assert names.count("nagar.no_block") == 0


def test_the_step_jobs_carry_the_plan_optimizer_settings() -> None:
    from fedledger.protocols.nagar.fold import ModelState
    from fedledger.protocols.nagar.jobs import train_job

    train = TrainSettings(batch_size=16)
    upd = steps_of(NagarParams(optimizer="fedavg"), 1)[-1]
    p = NagarParams(optimizer="fedavg", local_batch_size=1, local_epochs=2)
    job = train_job(train, p, ModelState(np.zeros(4), p, b"a"), 0, "d000", upd)
    assert (job.settings.solver, job.settings.batch_size, job.settings.epochs) == ("sgd", 1, 2)
    p = NagarParams(optimizer="fedavg")
    assert train_job(train, p, ModelState(np.zeros(4), p, b"a"), 0, "d000", upd).settings == train
    p = NagarParams(optimizer="dane", dane_eta=0.5, dane_mu=0.2, dane_iters=3, step_size=0.1)
    model = ModelState(np.zeros(4), p, b"a")
    model.full_grad = np.arange(4.0)
    job = train_job(train, p, model, 0, "d000", steps_of(p, 1)[-1])
    assert job.settings.solver == "dane"
    assert dict(job.settings.solver_params) == {
        "h": 0.1,
        "l2": 0.0,
        "eta": 0.5,
        "mu": 0.2,
        "iters": 3,
        "full_grad": (0.0, 1.0, 2.0, 3.0),
    }
