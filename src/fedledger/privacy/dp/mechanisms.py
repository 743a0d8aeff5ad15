"""Clipping and noise: the building blocks of every DP mechanism in fedledger.

Clipping bounds what one record (a sample, or a node's whole update) can change; noise
calibrated to that bound hides it. All randomness comes from a ``numpy.random.Generator``
passed in, so a run seeded through :func:`fedledger.seeding.derive_seed` is reproducible.

* :func:`clip` bounds one vector (per update), :func:`clip_rows` each row of a matrix
  (per sample), in the L1 or the L2 norm.
* :func:`gaussian_noise`: i.i.d. N(0, std^2).
* :func:`laplace_noise`: the L1 form, i.i.d. Laplace(0, scale) per coordinate; density
  proportional to exp(-||eta||_1 / scale).
* :func:`l2_laplace_noise`: the L2 form of Nagar's density, proportional to
  exp(-||eta||_2 / scale): a radius r ~ Gamma(shape d, scale) times a direction uniform
  on the unit sphere of R^d. Its expected norm is d * scale, so it grows with the
  dimension where the L1 form grows with sqrt(d) (per coordinate it is larger).
* :func:`laplace_share`: one of K shares whose sum is Laplace(0, scale) per coordinate
  (Gamma(1/K, scale) - Gamma(1/K, scale)), for noise added in a distributed way.

:class:`GaussianMechanism` and :class:`LaplaceMechanism` clip and then add noise, in that
order, always; an infinite epsilon (or a zero noise multiplier) means clipping only.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Literal

import numpy as np

from fedledger.privacy.dp.errors import PrivacyError

Norm = Literal["l1", "l2"]
NORMS: tuple[str, ...] = ("l1", "l2")


# ---------------------------------------------------------------- checks


def _check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise PrivacyError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_positive(name: str, value: float) -> None:
    if not (_is_real(value) and math.isfinite(value) and value > 0):
        raise PrivacyError(f"{name} must be a finite number > 0, got {value!r}")


def _check_non_negative(name: str, value: float) -> None:
    if not (_is_real(value) and math.isfinite(value) and value >= 0):
        raise PrivacyError(f"{name} must be a finite number >= 0, got {value!r}")


def _check_epsilon(epsilon: float) -> None:
    if not (_is_real(epsilon) and epsilon > 0 and not math.isnan(epsilon)):
        raise PrivacyError(f"epsilon must be > 0 (inf means no noise), got {epsilon!r}")


def _check_rng(rng: object) -> None:
    if not isinstance(rng, np.random.Generator):
        raise PrivacyError(
            f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
            f"got {type(rng).__name__}"
        )


def _check_finite(values: np.ndarray) -> None:
    if not np.all(np.isfinite(values)):
        bad = int(np.count_nonzero(~np.isfinite(values)))
        raise PrivacyError(f"cannot clip a vector holding {bad} non-finite value(s) (nan/inf)")


# ---------------------------------------------------------------- clipping


def vector_norm(values: np.ndarray, norm: Norm = "l2", axis: int | None = None) -> np.ndarray:
    """The L1 or L2 norm (float64) of ``values``, over all of it or along ``axis``."""
    _check_norm(norm)
    wide = np.asarray(values, dtype=np.float64)
    if norm == "l1":
        return np.sum(np.abs(wide), axis=axis)
    return np.sqrt(np.sum(wide * wide, axis=axis))


def _clip_factor(norms: np.ndarray, max_norm: float) -> np.ndarray:
    # where norms > max_norm > 0 the divisor is the norm itself; elsewhere no scaling
    return np.where(norms > max_norm, max_norm / np.maximum(norms, max_norm), 1.0)


def _shrink_overshoot(
    out: np.ndarray, max_norm: float, norm: Norm, axis: int | None
) -> np.ndarray:
    """Rounding to a narrow dtype can leave a norm a few ulps above the bound: pull it in."""
    norms = vector_norm(out, norm, axis)
    over = norms > max_norm
    if not np.any(over):
        return out
    shrink = np.where(over, 1.0 - 8 * float(np.finfo(out.dtype).eps), 1.0)
    if axis is not None:
        shrink = np.expand_dims(shrink, axis)
    return (out * shrink).astype(out.dtype, copy=False)


def clip(values: np.ndarray, max_norm: float, norm: Norm = "l2") -> np.ndarray:
    """``values`` scaled by min(1, max_norm / ||values||): a copy whose norm is <= max_norm.

    The dtype is kept for floating inputs (float64 otherwise); a vector already within the
    bound comes back unchanged (as a copy).
    """
    _check_norm(norm)
    _check_positive("max_norm", max_norm)
    arr = np.asarray(values)
    dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.dtype(np.float64)
    _check_finite(arr)
    factor = float(_clip_factor(vector_norm(arr, norm), max_norm))
    out = (arr.astype(np.float64) * factor).astype(dtype)
    return _shrink_overshoot(out, max_norm, norm, None)


def clip_rows(values: np.ndarray, max_norm: float, norm: Norm = "l2") -> np.ndarray:
    """Per-sample clipping: each row of a 2-D array scaled to norm <= ``max_norm``."""
    _check_norm(norm)
    _check_positive("max_norm", max_norm)
    arr = np.asarray(values)
    if arr.ndim != 2:
        raise PrivacyError(f"clip_rows needs a 2-D array (samples, features), got {arr.shape}")
    dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.dtype(np.float64)
    _check_finite(arr)
    factor = _clip_factor(vector_norm(arr, norm, axis=1), max_norm)
    out = (arr.astype(np.float64) * factor[:, None]).astype(dtype)
    return _shrink_overshoot(out, max_norm, norm, 1)


# ---------------------------------------------------------------- noise


def gaussian_noise(
    shape: int | tuple[int, ...], std: float, rng: np.random.Generator
) -> np.ndarray:
    """I.i.d. N(0, std^2) noise (float64); std 0 gives zeros and draws nothing."""
    _check_non_negative("std", std)
    _check_rng(rng)
    if std == 0:
        return np.zeros(shape, dtype=np.float64)
    return rng.normal(0.0, std, size=shape)


def laplace_noise(
    shape: int | tuple[int, ...], scale: float, rng: np.random.Generator
) -> np.ndarray:
    """The L1 form: i.i.d. Laplace(0, scale) per coordinate (float64); scale 0 gives zeros."""
    _check_non_negative("scale", scale)
    _check_rng(rng)
    if scale == 0:
        return np.zeros(shape, dtype=np.float64)
    return rng.laplace(0.0, scale, size=shape)


def l2_laplace_noise(dim: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    """The L2 form: density proportional to exp(-||eta||_2 / scale) on R^dim (float64).

    In polar coordinates that density is r^(dim-1) exp(-r / scale) times a constant over
    the sphere, so eta = r * u with r ~ Gamma(shape=dim, scale) and u uniform on the unit
    sphere (a normalised standard normal vector). scale 0 gives zeros.
    """
    if not (isinstance(dim, int | np.integer) and dim >= 1):
        raise PrivacyError(f"dim must be an integer >= 1, got {dim!r}")
    _check_non_negative("scale", scale)
    _check_rng(rng)
    if scale == 0:
        return np.zeros(int(dim), dtype=np.float64)
    radius = rng.gamma(shape=float(dim), scale=scale)
    direction = rng.standard_normal(int(dim))
    length = float(np.linalg.norm(direction))
    while length == 0.0:  # probability zero, but never divide by it
        direction = rng.standard_normal(int(dim))
        length = float(np.linalg.norm(direction))
    return radius * direction / length


def laplace_share(
    shape: int | tuple[int, ...], scale: float, parties: int, rng: np.random.Generator
) -> np.ndarray:
    """One party's share of distributed Laplace noise: Gamma(1/K, scale) - Gamma(1/K, scale).

    The Laplace distribution is infinitely divisible, so the sum of the K parties' shares
    is exactly Laplace(0, scale) per coordinate. Only sound when nobody sees a single
    party's noisy value (the shares are summed under encryption or secure aggregation)
    and every party adds its share.
    """
    if not (isinstance(parties, int | np.integer) and parties >= 1):
        raise PrivacyError(f"parties must be an integer >= 1, got {parties!r}")
    _check_non_negative("scale", scale)
    _check_rng(rng)
    if scale == 0:
        return np.zeros(shape, dtype=np.float64)
    k = 1.0 / int(parties)
    return rng.gamma(k, scale, size=shape) - rng.gamma(k, scale, size=shape)


# ---------------------------------------------------------------- mechanisms


def _add(clipped: np.ndarray, noise: np.ndarray) -> np.ndarray:
    return (clipped.astype(np.float64) + noise).astype(clipped.dtype)


@dataclass(frozen=True)
class GaussianMechanism:
    """L2-clip to ``clip_norm``, then add N(0, (noise_multiplier * clip_norm)^2) per coordinate.

    ``noise_multiplier`` is what an accountant takes (noise std over L2 sensitivity,
    add/remove-one neighbours); 0 means clipping only.
    """

    clip_norm: float
    noise_multiplier: float

    def __post_init__(self) -> None:
        _check_positive("clip_norm", self.clip_norm)
        _check_non_negative("noise_multiplier", self.noise_multiplier)

    @property
    def std(self) -> float:
        return self.noise_multiplier * self.clip_norm

    def apply(self, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Clipped ``values`` plus noise; the dtype of ``values`` is kept for floats."""
        _check_rng(rng)
        clipped = clip(values, self.clip_norm, "l2")
        if self.std == 0:
            return clipped
        return _add(clipped, gaussian_noise(clipped.shape, self.std, rng))


@dataclass(frozen=True)
class LaplaceMechanism:
    """Clip to ``clip_norm`` in ``norm``, then add Laplace noise for ``epsilon``-DP (Nagar).

    The noise density is proportional to exp(-epsilon ||eta|| / sensitivity) in the same
    norm: the L1 form (i.i.d. per coordinate) for ``norm="l1"``, the Gamma-radius L2 form
    for ``norm="l2"``. ``sensitivity`` defaults to 2 * clip_norm, the most two clipped
    vectors can differ by (a node's whole update is the record: replace-one neighbours);
    give clip_norm for add/remove-one neighbours. epsilon = inf means clipping only.
    """

    clip_norm: float
    epsilon: float
    norm: Norm = "l1"
    sensitivity: float | None = None

    def __post_init__(self) -> None:
        _check_positive("clip_norm", self.clip_norm)
        _check_epsilon(self.epsilon)
        _check_norm(self.norm)
        if self.sensitivity is not None:
            _check_positive("sensitivity", self.sensitivity)

    @property
    def effective_sensitivity(self) -> float:
        return 2.0 * self.clip_norm if self.sensitivity is None else float(self.sensitivity)

    @property
    def scale(self) -> float:
        """The noise scale: sensitivity / epsilon (0 when epsilon is infinite)."""
        if math.isinf(self.epsilon):
            return 0.0
        return self.effective_sensitivity / self.epsilon

    def noise(self, shape: int | tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        """Noise alone for a vector of this ``shape`` (float64), drawn as :meth:`apply` does."""
        if self.norm == "l1":
            return laplace_noise(shape, self.scale, rng)
        dims = (shape,) if isinstance(shape, int) else tuple(shape)
        size = int(np.prod(dims))
        return l2_laplace_noise(size, self.scale, rng).reshape(dims)

    def apply(self, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Clipped ``values`` plus noise; the dtype of ``values`` is kept for floats."""
        _check_rng(rng)
        clipped = clip(values, self.clip_norm, self.norm)
        if self.scale == 0:
            return clipped
        return _add(clipped, self.noise(clipped.shape, rng))
