"""Local training and evaluation on flat weight vectors.

A :class:`Learner` holds one torch module and one optimizer, reused by every call: a
simulator runs many nodes in one process and gives each job the node's weights as a flat
float32 vector, so nothing is built per call. Training is deterministic under its seed:
the only randomness is the order of the mini-batches, drawn from a seeded
``torch.Generator`` (the models have no dropout), so the same weights, data, settings and
seed give bit-identical weights in the same process configuration (thread count).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fedledger.errors import FedledgerError
from fedledger.learning.jobs import EvalResult, TrainResult, TrainSettings
from fedledger.learning.models import InputShape, build_model
from fedledger.learning.solvers import Solver, solver, solver_momentum
from fedledger.learning.weights import Layout, Vector, flatten, load_flat

#: Distinct (solver, parameters) pairs a Learner keeps built.
SOLVERS_KEPT = 16


def _params_key(params: Mapping[str, Any]) -> str:
    """An exact key for solver parameters: arrays by shape, dtype and content digest
    (their repr elides the middle of long arrays), the rest by JSON."""

    def plain(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            digest = hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()
            return ["ndarray", list(value.shape), str(value.dtype), digest]
        if isinstance(value, Mapping):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    return json.dumps(plain(dict(params)), sort_keys=True, default=repr)


class LearnerError(FedledgerError, ValueError):
    """A training or evaluation job got inputs that do not fit the model."""


class Learner:
    """One model architecture, trained and evaluated on weights passed in and out."""

    def __init__(
        self,
        model_name: str,
        model_params: Mapping[str, Any] | None,
        input_shape: InputShape,
        num_classes: int,
    ) -> None:
        self.model_name = model_name
        self.input_shape: InputShape = (
            int(input_shape[0]),
            int(input_shape[1]),
            int(input_shape[2]),
        )
        self.num_classes = num_classes
        with torch.random.fork_rng(devices=[]):  # leave the global torch RNG alone
            self.module: nn.Module = build_model(
                model_name, self.input_shape, num_classes, model_params
            )
        self.layout: Layout = Layout.of(self.module)
        self._optimizers: dict[str, torch.optim.Optimizer] = {}
        self._solvers: dict[tuple[str, str], Solver] = {}
        self._slices = self._parameter_slices()

    @property
    def num_weights(self) -> int:
        return self.layout.size

    def init_weights(self, seed: int) -> Vector:
        """Freshly initialised weights (the layers' default init) under ``seed``.

        Uses a forked torch RNG, so the global torch random state is left as it was.
        """
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for layer in self.module.modules():
                reset = getattr(layer, "reset_parameters", None)
                if callable(reset):
                    reset()
            return flatten(self.module)

    def _tensors(self, x: np.ndarray, y: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise LearnerError(
                f"x must have shape (N, {', '.join(map(str, self.input_shape))}), "
                f"got {tuple(x.shape)}"
            )
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if y is None:
            return xt, torch.empty(0, dtype=torch.int64)
        if y.shape != (x.shape[0],):
            raise LearnerError(f"y must have shape ({x.shape[0]},), got {tuple(y.shape)}")
        return xt, torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))

    def _load(self, weights: Vector) -> None:
        if weights.shape != (self.layout.size,):
            raise LearnerError(
                f"weights have shape {tuple(weights.shape)}, {self.model_name} expects "
                f"({self.layout.size},)"
            )
        load_flat(self.module, weights)

    def train(
        self,
        weights: Vector,
        x: np.ndarray,
        y: np.ndarray,
        settings: TrainSettings,
        seed: int,
        momentum_buffer: Vector | None = None,
    ) -> TrainResult:
        """SGD from ``weights`` over (x, y) for ``settings.epochs`` epochs.

        Each epoch visits the samples in a fresh seeded random order, in mini-batches of
        ``settings.batch_size`` (the last one may be smaller). With momentum, the buffers
        start from ``momentum_buffer`` (flat, the weights' layout) or at zero, and the
        result carries them at the end, so a node can keep one solver across jobs.
        ``loss`` is the mean cross-entropy over the last epoch's samples, as measured
        during training; ``num_samples`` is len(x). A solver of kind ``routine`` (DP-SGD)
        runs its own loop on this learner's module instead, after the same input checks.
        """
        if len(x) == 0:
            raise LearnerError("cannot train on 0 samples")
        if settings.epochs < 1 or settings.batch_size < 1 or not settings.lr > 0:
            raise LearnerError(
                f"train settings need epochs >= 1, batch_size >= 1, lr > 0; got {settings}"
            )
        xt, yt = self._tensors(x, y)
        if int(yt.min()) < 0 or int(yt.max()) >= self.num_classes:
            raise LearnerError(
                f"labels span {int(yt.min())}..{int(yt.max())}, allowed 0..{self.num_classes - 1}"
            )
        spec = self._solver_for(settings)
        if spec.routine is not None:
            result = spec.routine(self.module, weights, x, y, settings, seed)
            if result.weights.shape != (self.layout.size,):
                raise LearnerError(
                    f"solver {settings.solver!r} returned weights of shape "
                    f"{tuple(result.weights.shape)}, expected ({self.layout.size},)"
                )
            return result
        self._load(weights)
        opt = self._optimizer_for(settings)
        momentum = solver_momentum(settings)
        opt.state.clear()
        for group in opt.param_groups:
            group.update(lr=settings.lr, momentum=momentum, weight_decay=settings.weight_decay)
        if momentum_buffer is not None and momentum > 0:
            self._set_momentum(opt, momentum_buffer)
        generator = torch.Generator().manual_seed(seed)
        n, bs = len(xt), settings.batch_size
        self.module.train()
        epoch_loss = torch.zeros((), dtype=torch.float64)
        for _ in range(settings.epochs):
            order = torch.randperm(n, generator=generator)
            epoch_loss = torch.zeros((), dtype=torch.float64)
            for start in range(0, n, bs):
                batch = order[start : start + bs]
                loss = F.cross_entropy(self.module(xt[batch]), yt[batch])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                epoch_loss += loss.detach().double() * len(batch)
        carried = self._momentum(opt) if momentum > 0 else None
        opt.state.clear()
        return TrainResult(flatten(self.module), n, float(epoch_loss) / n, carried)

    def _solver_for(self, settings: TrainSettings) -> Solver:
        """The settings' solver, built (and its parameters validated) once per name and
        parameters, then reused: a routine may cache what it plans (DP-SGD's noise)."""
        key = (settings.solver, _params_key(settings.solver_params))
        spec = self._solvers.get(key)
        if spec is None:
            spec = solver(settings.solver, settings.solver_params)
            self._solvers[key] = spec
            while len(self._solvers) > SOLVERS_KEPT:  # parameters that change per job
                self._solvers.pop(next(iter(self._solvers)))
        return spec

    def _optimizer_for(self, settings: TrainSettings) -> torch.optim.Optimizer:
        """The solver's optimizer over this module, built once per solver name and reused
        (its hyper-parameters are set per job)."""
        opt = self._optimizers.get(settings.solver)
        if opt is None:
            factory = self._solver_for(settings).optimizer
            if factory is None:
                raise LearnerError(f"solver {settings.solver!r} is not an optimizer solver")
            opt = factory(self.module.parameters(), settings)
            self._optimizers[settings.solver] = opt
        return opt

    def _parameter_slices(self) -> tuple[tuple[torch.Tensor | None, int, int], ...]:
        """(parameter or None for a buffer, offset, size) per state_dict entry: where each
        parameter's momentum buffer lies in the flat layout (the module never changes)."""
        params = dict(self.module.named_parameters())
        out, offset = [], 0
        for name, tensor in self.module.state_dict().items():
            out.append((params.get(name), offset, tensor.numel()))
            offset += tensor.numel()
        return tuple(out)

    def _set_momentum(self, opt: torch.optim.Optimizer, buffer: Vector) -> None:
        if buffer.shape != (self.layout.size,):
            raise LearnerError(
                f"momentum buffer has shape {tuple(buffer.shape)}, {self.model_name} expects "
                f"({self.layout.size},)"
            )
        source = torch.from_numpy(np.ascontiguousarray(buffer, dtype=np.float32))  # chunks cloned
        for param, offset, size in self._slices:
            if param is not None:
                chunk = source[offset : offset + size].view_as(param).clone()
                opt.state[param]["momentum_buffer"] = chunk

    def _momentum(self, opt: torch.optim.Optimizer) -> Vector:
        out = np.zeros(self.layout.size, dtype=np.float32)
        for param, offset, size in self._slices:
            state = opt.state.get(param) if param is not None else None
            buf = None if state is None else state.get("momentum_buffer")
            if buf is not None:
                out[offset : offset + size] = buf.detach().reshape(-1).numpy()
        return out

    @torch.inference_mode()
    def _logits(self, x: torch.Tensor, batch_size: int) -> torch.Tensor:
        self.module.eval()
        return torch.cat([self.module(x[s : s + batch_size]) for s in range(0, len(x), batch_size)])

    def evaluate(
        self, weights: Vector, x: np.ndarray, y: np.ndarray, batch_size: int = 1024
    ) -> EvalResult:
        """Accuracy and mean cross-entropy of ``weights`` on (x, y)."""
        if len(x) == 0:
            raise LearnerError("cannot evaluate on 0 samples")
        xt, yt = self._tensors(x, y)
        if int(yt.min()) < 0 or int(yt.max()) >= self.num_classes:
            raise LearnerError(
                f"labels span {int(yt.min())}..{int(yt.max())}, allowed 0..{self.num_classes - 1}"
            )
        self._load(weights)
        logits = self._logits(xt, batch_size)
        loss = F.cross_entropy(logits, yt, reduction="sum").item() / len(yt)
        correct = int((logits.argmax(dim=1) == yt).sum())
        return EvalResult(correct / len(yt), loss, len(yt))

    def predict(self, weights: Vector, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Predicted labels (int64, shape (N,)) of ``weights`` on x."""
        xt, _ = self._tensors(x, None)
        if len(xt) == 0:
            return np.zeros(0, dtype=np.int64)
        self._load(weights)
        return self._logits(xt, batch_size).argmax(dim=1).numpy().astype(np.int64)
