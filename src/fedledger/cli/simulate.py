"""``fedledger run``, ``list`` and ``compare``: experiments in the simulator."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fedledger.cli.common import console, fail, horizon_row, key_value_table, step_label
from fedledger.errors import ConfigError, FedledgerError

if TYPE_CHECKING:
    from fedledger.experiment.rundir import RunSummary


def run(
    config: Annotated[Path, typer.Argument(help="experiment YAML file")],
    override: Annotated[
        list[str] | None,
        typer.Option("-o", "--override", help="key.path=value, e.g. -o rounds=5 (repeatable)"),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="run directory (default runs/<name>-<time>)")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
    threads: Annotated[
        int,
        typer.Option(
            min=1,
            help="torch threads per job; 1 is fastest for the small models here "
            "(more threads only pay off for large models and batches)",
        ),
    ] = 1,
    executor: Annotated[
        str,
        typer.Option(help="where learning jobs run: inline (this process) or ray (same results)"),
    ] = "inline",
    ray_address: Annotated[
        str | None,
        typer.Option(help="Ray cluster (HOST:PORT of `ray start --head`); default: a local Ray"),
    ] = None,
    ray_cpus_per_job: Annotated[
        float, typer.Option(min=0.01, help="CPUs each Ray worker reserves")
    ] = 1.0,
    ray_workers: Annotated[
        int | None, typer.Option(min=1, help="Ray workers (default: cluster CPUs / per job)")
    ] = None,
    ray_max_in_flight: Annotated[
        int | None, typer.Option(min=1, help="jobs submitted ahead (default: 2 x workers)")
    ] = None,
    ray_retries: Annotated[
        int, typer.Option(min=0, help="times a job is sent again after its worker died")
    ] = 2,
) -> None:
    """Run an experiment in the simulator and write its run directory."""
    import torch

    from fedledger.assembly.build import build_protocol
    from fedledger.assembly.config import load_config
    from fedledger.experiment.runner import run_experiment
    from fedledger.runtime.ray import EXECUTOR_NAMES, RayOptions

    torch.set_num_threads(threads)

    try:
        cfg = load_config(config, tuple(override or ()))
        horizon = build_protocol(cfg).horizon(cfg.rounds)
        if executor not in EXECUTOR_NAMES:
            raise ConfigError(
                "--executor", f"unknown executor {executor!r}; allowed: {', '.join(EXECUTOR_NAMES)}"
            )
        ray_options = None
        if executor == "ray":
            ray_options = RayOptions(
                address=ray_address,
                cpus_per_job=ray_cpus_per_job,
                threads_per_job=threads,
                workers=ray_workers,
                max_in_flight=ray_max_in_flight,
                max_retries=ray_retries,
            )
    except FedledgerError as exc:
        raise fail(exc) from None
    started = time.perf_counter()
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn(step_label(horizon.unit) + " {task.completed:.0f}/{task.total:.0f}"),
        TextColumn("{task.fields[acc]}"),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
        transient=True,
    )
    with progress:
        task = progress.add_task(f"{cfg.name} [{executor}]", total=horizon.length, acc="")

        def on_row(row: object) -> None:
            step = getattr(row, "step", 0)
            acc = getattr(row, "accuracy", 0.0)
            progress.update(task, completed=min(step, horizon.length), acc=f"acc {acc:.3f}")

        try:
            result = run_experiment(cfg, out, on_row=on_row, executor=executor, ray=ray_options)
        except FedledgerError as exc:
            raise fail(exc) from None
    _print_summary(result.summary, result.run_dir, time.perf_counter() - started)
    if executor != "inline" and result.executor is not None:
        usage = result.executor
        console.print(
            f"executor {usage['executor']}: {usage['jobs']} jobs on {usage['workers']} workers "
            f"({usage['machines']} machines), {usage['retries']} retries; job time "
            f"{usage['job_seconds']:.2f} s in {usage['wait_seconds']:.2f} s of waiting: "
            f"speedup {usage['speedup'] or 0:.2f}x (start-up {usage['startup_seconds']:.1f} s)",
            highlight=False,
        )


def _print_summary(summary: RunSummary, run_dir: Path, wall: float) -> None:
    acc = summary.final_accuracy
    counters = summary.counters
    rows = [
        ("protocol", summary.protocol),
        ("seed", str(summary.seed)),
        ("nodes", f"{summary.nodes} ({len(summary.malicious)} malicious)"),
        horizon_row(summary),
        ("final accuracy (honest mean)", "n/a" if acc is None else f"{acc:.4f}"),
        ("virtual time", f"{counters.virtual_seconds:.2f} s"),
        ("wall time", f"{wall:.2f} s"),
        ("messages (lost)", f"{counters.messages} ({counters.messages_lost})"),
        ("bytes sent", f"{counters.bytes_sent / 1e6:.2f} MB"),
        ("run directory", str(run_dir)),
    ]
    console.print(key_value_table(f"fedledger run: {summary.name}", rows))


def list_components() -> None:
    """Show the registered protocols, models, datasets, partitioners, aggregators, attacks."""
    from fedledger.assembly.plugins import registries

    for kind, registry in registries().items():
        table = Table(title=f"{kind}s", show_header=True, title_justify="left")
        table.add_column("name", style="bold")
        table.add_column("parameters")
        table.add_column("summary")
        for comp in registry:
            fields = ", ".join(
                n if f.is_required() else f"{n}={f.get_default(call_default_factory=True)!r}"
                for n, f in comp.params.model_fields.items()
            )
            table.add_row(comp.name, fields or "-", comp.summary)
        console.print(table)


def compare(
    configs: Annotated[list[Path], typer.Argument(help="experiment YAML files (2 or more)")],
    override: Annotated[
        list[str] | None,
        typer.Option("-o", "--override", help="key.path=value for every config (repeatable)"),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="parent directory of the runs (default runs/compare-<time>)")
    ] = None,
) -> None:
    """Run several experiments in the simulator and show them side by side: accuracy,
    what each protocol's ledger caught, and what it cost."""
    import torch

    from fedledger.assembly.config import load_config
    from fedledger.experiment.compare import comparison_rows, run_all
    from fedledger.experiment.runner import run_experiment

    torch.set_num_threads(1)
    try:
        loaded = [load_config(path, override or []) for path in configs]
        if len(loaded) < 2:
            raise typer.BadParameter(f"compare needs 2 or more configs, got {len(loaded)}")
        parent = out or Path(loaded[0].output.dir) / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"

        def one(config, run_dir):  # type: ignore[no-untyped-def]
            console.print(f"running [bold]{config.name}[/] ({config.protocol.name}) ...")
            return run_experiment(config, out=run_dir).run_dir

        runs = run_all(loaded, parent, one)
    except FedledgerError as exc:
        raise fail(exc) from None
    table = Table(title="fedledger compare", show_lines=False)
    table.add_column("")
    for r in runs:
        table.add_column(r.config.name)
    for label, cells in comparison_rows(runs):
        table.add_row(label, *cells)
    console.print(table)
