"""Sweeps over many runs, here or on a Ray cluster: one helper for the benchmarks.

    pool = sweep_pool(args.ray, jobs=2)          # --ray [ADDR] given: Ray; else processes
    with pool:
        for row in pool.map(run_one, configs):   # rows in the order of the configs
            ...

Without ``--ray`` the runs go to a process pool of ``jobs`` processes (``jobs`` 1: run in
this process, one after another). With ``--ray`` (no address: a local Ray started for
the sweep; ``--ray HOST:PORT``: a cluster started with ``ray start --head``) every run is
one call on its own Ray worker (one CPU each), and results are gathered in order. The
function and its arguments travel to the worker (a benchmark script's functions by
value); data paths in the configs must exist on every machine of the cluster.

    .venv/bin/python benchmarks/sweep.py --quick [--ray [ADDR]]   # a 4-run demo sweep
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
LOCAL = "local"  # --ray without an address


def add_ray_option(parser: argparse.ArgumentParser) -> None:
    """``--ray [ADDR]``: spread the runs over Ray (no ADDR: a local Ray)."""
    parser.add_argument(
        "--ray",
        nargs="?",
        const=LOCAL,
        default=None,
        metavar="ADDR",
        help="run each experiment on its own Ray worker: a local Ray, or the cluster "
        "at ADDR (HOST:PORT of `ray start --head`)",
    )


class _Deferred(Future[T]):
    """A call run in this process when its result is first asked for."""

    def __init__(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]):
        super().__init__()
        self._call: tuple[Callable[..., T], tuple[Any, ...], dict[str, Any]] | None = (
            fn, args, kwargs,
        )

    def result(self, timeout: float | None = None) -> T:
        if self._call is not None:
            fn, args, kwargs = self._call
            self._call = None
            try:
                self.set_result(fn(*args, **kwargs))
            except Exception as exc:
                self.set_exception(exc)
        return super().result(timeout)


class InlinePool(Executor):
    """Runs each call in this process when its result is asked for, in that order (a
    sweep with one job and no Ray: progress shows run by run)."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        return _Deferred(fn, args, kwargs)


class RayPool(Executor):
    """One Ray call per run, each on its own worker (fedledger's Ray executor)."""

    def __init__(self, address: str | None, cpus_per_run: float = 1.0) -> None:
        from fedledger.runtime.ray import RayOptions
        from fedledger.runtime.ray.executor import RayExecutor

        self._executor = RayExecutor(RayOptions(address=address, cpus_per_job=cpus_per_run))
        self.workers = self._executor.workers

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        if kwargs:
            raise TypeError(f"RayPool.submit takes positional arguments only, got {kwargs}")
        _by_value(fn)
        return self._executor.submit(fn, *args)

    def map(  # type: ignore[override]
        self, fn: Callable[..., T], *iterables: Iterable[Any], timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[T]:
        futures = [self.submit(fn, *args) for args in zip(*iterables, strict=True)]
        return (f.result(timeout=timeout) for f in futures)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._executor.shutdown()


def _by_value(fn: Callable[..., Any]) -> None:
    """A benchmark's function travels by value: workers cannot import its script."""
    module = sys.modules.get(getattr(fn, "__module__", "") or "")
    if module is None or module.__name__ in ("__main__", "builtins"):
        return
    if module.__name__.split(".")[0] == "fedledger":
        return
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(module)


def sweep_pool(ray: str | None, jobs: int = 1) -> Executor:
    """The pool a sweep's runs go to: Ray when ``ray`` is given (``LOCAL``: a local Ray),
    else ``jobs`` local processes (1: this process)."""
    if ray is not None:
        return RayPool(None if ray == LOCAL else ray)
    if jobs > 1:
        return ProcessPoolExecutor(jobs)
    return InlinePool()


def demo_run(seed: int) -> dict[str, Any]:
    """One tiny vanilla run: its seed, final accuracy and wall seconds."""
    import tempfile
    from pathlib import Path

    import torch

    from fedledger.assembly.config import parse_config
    from fedledger.experiment.runner import run_experiment

    torch.set_num_threads(1)
    tree = {
        "name": f"sweep-demo-{seed}",
        "seed": seed,
        "rounds": 2,
        "data": {"dataset": "digits", "partition": "iid"},
        "model": {"name": "mlp", "hidden": [16]},
        "train": {"epochs": 1, "lr": 0.1, "batch_size": 16},
        "protocol": {"name": "vanilla"},
        "nodes": {"count": 4},
        "output": {"plots": False},
    }
    with tempfile.TemporaryDirectory(prefix="sweep-demo-") as tmp:
        result = run_experiment(parse_config(tree), Path(tmp) / "run")
    return {"seed": seed, "accuracy": result.summary.final_accuracy,
            "wall": result.summary.wall_seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 tiny runs (the default)")
    parser.add_argument("--jobs", type=int, default=1, help="local processes without --ray")
    add_ray_option(parser)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    with sweep_pool(args.ray, args.jobs) as pool:
        rows = list(pool.map(demo_run, range(4)))
    for row in rows:
        print(f"seed {row['seed']}: accuracy {row['accuracy']:.3f} ({row['wall']:.1f} s)")
    where = f"ray ({args.ray})" if args.ray else f"{args.jobs} local process(es)"
    print(f"{len(rows)} runs on {where} in {time.perf_counter() - began:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
