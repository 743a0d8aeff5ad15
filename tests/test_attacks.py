"""Attack library: data and model poisoning, omniscient attacks and behaviours."""

from __future__ import annotations

import math
from dataclasses import replace
from statistics import NormalDist

import numpy as np
import pytest

from fedledger.errors import ConfigError
from fedledger.learning.attacks import ATTACKS, Attack, AttackContext
from fedledger.learning.attacks.backdoor import apply_trigger, attack_success_rate
from fedledger.learning.attacks.omniscient import alie_z

MODEL_ATTACKS = [
    ("gaussian_noise", {}),
    ("random_model", {}),
    ("sign_flip", {}),
    ("scaling", {}),
    ("alie", {}),
    ("ipm", {}),
    ("min_max", {}),
    ("min_sum", {"perturbation": "unit_vector"}),
    ("lazy", {}),
    ("lazy", {"copy": True, "noise": 0.1}),
    ("free_rider", {}),
    ("sybil", {"inner": {"name": "gaussian_noise", "sigma": 0.5}}),
]


def build(name: str, **params) -> Attack:
    return ATTACKS.build(name, params, where="attack")


def round_context(seed: int = 0, k: int = 6, dim: int = 40) -> tuple[np.ndarray, AttackContext]:
    rng = np.random.default_rng(100)
    start = rng.normal(size=dim).astype(np.float32)
    honest = tuple((start + 0.1 * rng.normal(size=dim)).astype(np.float32) for _ in range(k))
    trained = (start + 0.1 * rng.normal(size=dim)).astype(np.float32)
    return trained, AttackContext(start=start, honest=honest, num_attackers=2, seed=seed)


# --------------------------------------------------------------- model attacks, in general


@pytest.mark.parametrize(("name", "params"), MODEL_ATTACKS)
def test_model_attacks_are_deterministic_and_keep_shape(name: str, params: dict) -> None:
    attack = build(name, **params)
    trained, context = round_context(seed=5)
    first = attack.poison_model(trained.copy(), context)
    again = build(name, **params).poison_model(trained.copy(), context)
    assert first.dtype == np.float32
    assert first.shape == trained.shape
    np.testing.assert_array_equal(first, again)
    assert np.isfinite(first).all()


@pytest.mark.parametrize(("name", "params"), MODEL_ATTACKS)
def test_omniscient_fallback_without_honest_models(name: str, params: dict) -> None:
    attack = build(name, **params)
    trained, context = round_context()
    alone = AttackContext(start=context.start, honest=(), num_attackers=3, seed=1)
    out = attack.poison_model(trained, alone)
    assert out.shape == trained.shape
    assert out.dtype == np.float32
    assert np.isfinite(out).all()


def test_random_draws_depend_on_the_seed() -> None:
    trained, context = round_context(seed=1)
    _, other = round_context(seed=2)
    for name in ("gaussian_noise", "random_model"):
        attack = build(name)
        assert not np.array_equal(
            attack.poison_model(trained, context), attack.poison_model(trained, other)
        )


def test_omniscient_flags() -> None:
    flags = {name: build(name).omniscient for name in ("alie", "ipm", "min_max", "min_sum")}
    assert all(flags.values())
    assert not build("sign_flip").omniscient
    assert not build("lazy").omniscient
    assert build("lazy", copy=True).omniscient
    assert build("sybil", inner={"name": "sign_flip"}, base="start").omniscient is False
    assert build("sybil", inner={"name": "alie"}, base="start").omniscient


# --------------------------------------------------------------- simple model attacks


def test_noise_sign_flip_scaling_random_model_formulas() -> None:
    start = np.array([1.0, 2.0, 3.0], np.float32)
    trained = np.array([2.0, 2.0, 1.0], np.float32)
    context = AttackContext(start=start, seed=3)
    assert build("sign_flip").poison_model(trained, context).tolist() == [0, 2, 5]
    assert build("sign_flip", scale=2).poison_model(trained, context).tolist() == [-1, 2, 7]
    assert build("scaling", factor=3).poison_model(trained, context).tolist() == [4, 2, -3]
    big = np.random.default_rng(0).normal(3.0, 2.0, 200_000).astype(np.float32)
    noisy = build("gaussian_noise", sigma=0.5).poison_model(big, context)
    assert abs(float((noisy - big).std()) - 0.5) < 0.01
    fresh = build("random_model").poison_model(big, context)
    assert abs(float(fresh.mean()) - 3.0) < 0.02
    assert abs(float(fresh.std()) - 2.0) < 0.02
    assert abs(float(np.corrcoef(fresh, big)[0, 1])) < 0.01


# --------------------------------------------------------------- omniscient attacks


def test_alie_z_follows_baruch_et_al() -> None:
    # n = 50, m = 12: s = floor(26) - 12 = 14, z = Phi^-1(36 / 50)
    assert alie_z(50, 12) == pytest.approx(NormalDist().inv_cdf(0.72))
    assert alie_z(10, 2) == pytest.approx(NormalDist().inv_cdf(0.6))
    assert alie_z(10, 8) == pytest.approx(NormalDist().inv_cdf(0.9))  # s raised to 1


def test_alie_formula() -> None:
    start = np.zeros(2, np.float32)
    honest = (np.array([1, 0], np.float32), np.array([3, 4], np.float32))
    context = AttackContext(start=start, honest=honest, num_attackers=1)
    # mean (2, 2), std (1, 2); n = 3, m = 1: s = 1, z = Phi^-1(2/3)
    z = NormalDist().inv_cdf(2 / 3)
    out = build("alie").poison_model(np.zeros(2, np.float32), context)
    np.testing.assert_allclose(out, [2 - z, 2 - 2 * z], rtol=1e-6)
    out = build("alie", z=1.5).poison_model(np.zeros(2, np.float32), context)
    np.testing.assert_allclose(out, [0.5, -1.0])


def test_ipm_formula() -> None:
    start = np.array([1.0, 1.0], np.float32)
    honest = (np.array([2, 3], np.float32), np.array([4, 5], np.float32))
    context = AttackContext(start=start, honest=honest)
    # mean delta (2, 3); -0.5 * that
    out = build("ipm", epsilon=0.5).poison_model(start, context)
    np.testing.assert_allclose(out, [0.0, -0.5])


def test_fallback_results() -> None:
    start = np.array([1.0, 1.0], np.float32)
    trained = np.array([2.0, 0.0], np.float32)
    alone = AttackContext(start=start)
    for name in ("alie", "min_max", "min_sum"):
        np.testing.assert_allclose(build(name).poison_model(trained, alone), trained)
    np.testing.assert_allclose(build("ipm", epsilon=2).poison_model(trained, alone), [-1.0, 3.0])


def centred(context: AttackContext) -> tuple[np.ndarray, np.ndarray]:
    honest = np.stack(context.honest).astype(np.float64)
    mean = honest.mean(axis=0)
    return honest, mean


@pytest.mark.parametrize("perturbation", ["unit_vector", "std", "sign"])
def test_min_sum_gamma_matches_closed_form(perturbation: str) -> None:
    trained, context = round_context(k=7, dim=12)
    honest, mean = centred(context)
    out = build("min_sum", perturbation=perturbation, tol=1e-9).poison_model(trained, context)
    p = out.astype(np.float64) - mean
    # sum_i ||mu + p - h_i||^2 = sum_i ||mu - h_i||^2 + k ||p||^2 <= max_i sum_j ||h_i - h_j||^2
    spread = ((honest - mean) ** 2).sum()
    bound = max(((honest - h) ** 2).sum() for h in honest)
    expected_norm = math.sqrt((bound - spread) / len(honest))
    assert np.linalg.norm(p) == pytest.approx(expected_norm, rel=1e-4)
    if perturbation == "std":
        direction = -honest.std(axis=0)
        np.testing.assert_allclose(
            p / np.linalg.norm(p), direction / np.linalg.norm(direction), rtol=1e-5
        )


@pytest.mark.parametrize("perturbation", ["unit_vector", "std", "sign"])
def test_min_max_gamma_matches_closed_form(perturbation: str) -> None:
    trained, context = round_context(k=7, dim=12)
    honest, mean = centred(context)
    start = context.start.astype(np.float64)
    if perturbation == "unit_vector":
        p = -(mean - start) / np.linalg.norm(mean - start)
    elif perturbation == "std":
        p = -honest.std(axis=0)
    else:
        p = -np.sign(mean - start)
    bound = max(((a - b) ** 2).sum() for a in honest for b in honest)
    # largest gamma with ||c_i + gamma p||^2 <= bound for every c_i = mu - h_i
    roots = []
    for c in mean - honest:
        a, b, q = p @ p, 2 * (c @ p), c @ c - bound
        roots.append((-b + math.sqrt(b * b - 4 * a * q)) / (2 * a))
    gamma = min(roots)
    out = build("min_max", perturbation=perturbation, tol=1e-9).poison_model(trained, context)
    np.testing.assert_allclose(out, (mean + gamma * p).astype(np.float32), rtol=1e-5, atol=1e-6)
    worst = max(((out - h) ** 2).sum() for h in honest)
    assert worst == pytest.approx(bound, rel=1e-4)


# --------------------------------------------------------------- behaviours


def test_lazy_resends_start_or_copies_an_honest_model() -> None:
    trained, context = round_context(seed=9)
    np.testing.assert_array_equal(build("lazy").poison_model(trained, context), context.start)
    np.testing.assert_array_equal(build("free_rider").poison_model(trained, context), context.start)
    copied = build("lazy", copy=True).poison_model(trained, context)
    assert any(np.array_equal(copied, h) for h in context.honest)
    picks = {
        int(np.argmax([np.array_equal(build("lazy", copy=True).poison_model(trained, c), h)
                       for h in context.honest]))
        for c in (AttackContext(context.start, context.honest, seed=s) for s in range(20))
    }  # fmt: skip
    assert len(picks) > 1  # the seed chooses which
    alone = AttackContext(start=context.start)
    np.testing.assert_array_equal(
        build("lazy", copy=True).poison_model(trained, alone), alone.start
    )


def test_sybil_identities_submit_one_identical_update() -> None:
    trained, context = round_context(seed=1)
    other_trained, other = round_context(seed=2)  # another identity: own seed, own model
    other_trained = other_trained + 1.0
    for inner in ({"name": "gaussian_noise", "sigma": 0.3}, {"name": "sign_flip"}):
        for base in ("honest_mean", "start"):
            sybil = build("sybil", inner=inner, base=base)
            first = sybil.poison_model(trained, context)
            second = build("sybil", inner=inner, base=base).poison_model(other_trained, other)
            np.testing.assert_array_equal(first, second)
    noise = build("sybil", inner={"name": "gaussian_noise"}, base="start")
    next_round = AttackContext(start=context.start + 0.5, honest=context.honest, seed=1)
    shift = noise.poison_model(trained, next_round) - noise.poison_model(trained, context)
    assert not np.allclose(shift, 0.5)  # a fresh shared draw each round
    flip = build("sybil", inner={"name": "sign_flip"}).poison_model(trained, context)
    mean = np.stack(context.honest).astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(flip, 2 * context.start - mean, rtol=1e-5, atol=1e-6)


def test_sybil_params_are_checked() -> None:
    with pytest.raises(ConfigError, match="unknown attack 'nope'"):
        build("sybil", inner={"name": "nope"})
    with pytest.raises(ConfigError, match="scal"):
        build("sybil", inner={"name": "sign_flip", "scal": 2})
    with pytest.raises(ConfigError, match="name"):
        build("sybil", inner={"sigma": 2})
    with pytest.raises(ConfigError, match="another sybil"):
        build("sybil", inner={"name": "sybil", "inner": {"name": "lazy"}})


# --------------------------------------------------------------- data poisoning


def data(n: int = 100, shape: tuple[int, ...] = (64,)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    x = rng.random((n, *shape)).astype(np.float32) * 0.5
    y = rng.integers(0, 10, n).astype(np.int64)
    return x, y


def poison(name: str, x: np.ndarray, y: np.ndarray, seed: int = 0, **params):
    return build(name, **params).poison_data(x, y, 10, np.random.default_rng(seed))


def test_label_flip_maps_as_specified() -> None:
    x, y = data()
    x2, y2 = poison("label_flip", x, y)
    assert x2 is x
    assert y2.dtype == y.dtype
    np.testing.assert_array_equal(y2, 9 - y)
    mapping = [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]
    np.testing.assert_array_equal(poison("label_flip", x, y, mapping=mapping)[1], (y + 1) % 10)
    np.testing.assert_array_equal(poison("label_flip", x, y, target=3)[1], np.full_like(y, 3))
    half = poison("label_flip", x, y, fraction=0.5)[1]
    changed = half != y
    assert np.array_equal(half[changed], 9 - y[changed])
    assert changed.sum() <= 50
    np.testing.assert_array_equal(half, poison("label_flip", x, y, fraction=0.5)[1])


def test_label_flip_checks() -> None:
    x, y = data()
    with pytest.raises(ConfigError, match="permutation"):
        build("label_flip", mapping=[0, 0, 1])
    with pytest.raises(ConfigError, match="not both"):
        build("label_flip", mapping=[1, 0], target=1)
    with pytest.raises(ConfigError, match="has 2 entries, the dataset has 10"):
        poison("label_flip", x, y, mapping=[1, 0])
    with pytest.raises(ConfigError, match="class 12 is outside"):
        poison("label_flip", x, y, target=12)


def test_random_labels_and_random_data() -> None:
    x, y = data()
    x2, y2 = poison("random_labels", x, y, seed=1)
    assert x2 is x
    assert y2.dtype == y.dtype
    assert y2.min() >= 0 and y2.max() <= 9 and not np.array_equal(y2, y)
    np.testing.assert_array_equal(y2, poison("random_labels", x, y, seed=1)[1])
    x3, y3 = poison("random_data", x, y, seed=1)
    assert x3.shape == x.shape and x3.dtype == x.dtype
    assert x3.min() >= 0 and x3.max() < 1 and x3.max() > 0.9  # clean data is below 0.5
    np.testing.assert_array_equal(y3, y)
    x4, _ = poison("random_data", x, y, seed=1, fraction=0.25)
    assert (~np.all(x4 == x, axis=1)).sum() == 25
    x5, y5 = poison("gaussian_data", x, y, seed=1, sigma=0.5, fraction=0.5)
    assert x5.shape == x.shape and x5.dtype == x.dtype
    np.testing.assert_array_equal(y5, y)
    noisy = ~np.all(x5 == x, axis=1)
    assert noisy.sum() == 50
    assert abs(float((x5[noisy] - x[noisy]).std()) - 0.5) < 0.02


# --------------------------------------------------------------- backdoor


def test_trigger_is_a_corner_square_relative_to_image_size() -> None:
    x, _ = data(3, (64,))
    stamped = apply_trigger(x)  # 8x8: ceil(0.15 * 8) = 2 pixels
    changed = np.flatnonzero(~np.all(stamped == x, axis=0))
    assert changed.tolist() == [54, 55, 62, 63]
    assert (stamped[:, changed] == 1.0).all()
    assert stamped.dtype == x.dtype and stamped.shape == x.shape
    mnist = np.zeros((2, 1, 28, 28), np.float32)
    stamped = apply_trigger(mnist, corner="top_left")  # 28x28: ceil(4.2) = 5 pixels
    assert stamped[:, :, :5, :5].min() == 1.0 and stamped.sum() == 2 * 25
    with pytest.raises(ConfigError, match="not a square image"):
        apply_trigger(np.zeros((2, 10)))
    np.testing.assert_array_equal(
        apply_trigger(np.zeros((1, 2, 3)), image_shape=None).shape, (1, 2, 3)
    )


def test_backdoor_poisons_a_share_of_samples() -> None:
    x, y = data(200, (64,))
    attack = build("backdoor", target=7, fraction=0.25)
    x2, y2 = attack.poison_data(x, y, 10, np.random.default_rng(0))
    triggered = np.all(x2[:, [54, 55, 62, 63]] == 1.0, axis=1)
    assert triggered.sum() == 50
    assert (y2[triggered] == 7).all()
    np.testing.assert_array_equal(y2[~triggered], y[~triggered])
    np.testing.assert_array_equal(x2[~triggered], x[~triggered])


def test_attack_success_rate() -> None:
    x, y = data(100, (64,))
    target = 7

    def backdoored(images: np.ndarray) -> np.ndarray:
        # a model that answers the target when the corner pixel is lit, class 0 otherwise
        return np.where(images[:, 63] == 1.0, target, 0)

    assert attack_success_rate(backdoored, x, y, target) == 1.0
    assert attack_success_rate(lambda im: np.zeros(len(im), int), x, y, target) == 0.0
    attack = build("backdoor", target=target, corner="top_left")
    assert attack_success_rate(backdoored, x, y, target, attack.apply_trigger) == 0.0
    assert math.isnan(attack_success_rate(backdoored, x, np.full(100, target), target))
    half = lambda im: np.where(np.arange(len(im)) % 2 == 0, target, 1)  # noqa: E731
    assert attack_success_rate(half, x, y, target) == pytest.approx(0.5, abs=0.02)


def test_backdoor_is_learned_on_digits() -> None:
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    digits = load_digits()
    x, y = (digits.data / 16).astype(np.float32), digits.target
    attack = build("backdoor", target=0, fraction=0.2)
    xp, yp = attack.poison_data(x[:1400], y[:1400], 10, np.random.default_rng(0))
    clean = LogisticRegression(max_iter=300).fit(x[:1400], y[:1400])
    poisoned = LogisticRegression(max_iter=300).fit(xp, yp)
    x_test, y_test = x[1400:], y[1400:]
    assert attack_success_rate(clean.predict, x_test, y_test, 0, attack.apply_trigger) < 0.1
    assert attack_success_rate(poisoned.predict, x_test, y_test, 0, attack.apply_trigger) > 0.9
    assert poisoned.score(x_test, y_test) > clean.score(x_test, y_test) - 0.05


def test_registered_names() -> None:
    expected = {
        "label_flip", "random_labels", "random_data", "gaussian_data", "backdoor", "gaussian_noise",
        "random_model", "sign_flip", "scaling", "alie", "ipm", "min_max", "min_sum",
        "lazy", "free_rider", "sybil",
    }  # fmt: skip
    assert expected <= set(ATTACKS.names())


def test_model_attacks_wrap_only_shared_training_jobs() -> None:
    """A malicious node's update is poisoned; a model it trains for itself only
    (``TrainJob(shared=False)``, a PoS-BFL validator's reference model) is not."""
    from fedledger.assembly.jobs import JobRunner, NodeLearning
    from fedledger.learning.data import DATASETS, prepare_federated_data
    from fedledger.learning.train import Learner
    from fedledger.protocols.base import TrainJob, TrainSettings

    data = prepare_federated_data(DATASETS.build("digits"), 2, "iid", seed=0)
    learner = Learner("mlp", {"hidden": [8]}, data.input_shape, data.num_classes)
    runner = JobRunner(
        learner,
        {
            "bad": NodeLearning(data.nodes[0], build("gaussian_noise", sigma=1.0)),
            "good": NodeLearning(data.nodes[0]),
        },
        seed=0,
    )
    job = TrainJob(learner.init_weights(0), TrainSettings(batch_size=16), seed=3)
    honest = runner.run("good", job).weights
    poisoned = runner.run("bad", job).weights
    kept = runner.run("bad", replace(job, shared=False)).weights
    assert np.array_equal(kept, honest)
    assert float(np.std(poisoned - honest)) > 0.5  # N(0, 1) noise on every weight
    assert not runner.needs_honest("bad", replace(job, shared=False))
