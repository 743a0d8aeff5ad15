"""Every script in benchmarks/ runs in its ``--quick`` form and prints a table.

A benchmark that lacks ``--quick`` fails here (argparse exits with status 2), so each new
benchmark must come with a small form of itself. The long ones are marked slow.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CONTRACTS_STACK

ROOT = Path(__file__).resolve().parents[1]
#: every script under benchmarks/ (``_name.py`` files are modules the scripts import)
BENCHMARKS = sorted(p for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_"))
#: quick forms measured at over a minute on 2 shared cores
SLOW: set[str] = set()
#: scripts whose results go to benchmarks/out by default: their quick runs write elsewhere
OUT_OPTION = {"dfl_matrix.py": "--out", "posbfl_table4.py": "--out"}
#: benchmarks that deploy a Vyper contract on the in-process EVM
NEEDS_CONTRACTS = {"dflbcb_paper.py"}
NUMBER = re.compile(r"(?<![\w.])-?\d+(?:[.,]\d+)*(?:e-?\d+)?%?")


def table_like(text: str) -> bool:
    """At least three non-empty lines, and a line with two or more numbers in it."""
    lines = [line for line in text.splitlines() if line.strip()]
    return len(lines) >= 3 and any(len(NUMBER.findall(line)) >= 2 for line in lines)


def test_table_like() -> None:
    assert table_like("rule  seconds\n----\nfedavg  0.012  1.0\n")
    assert not table_like("done\n")
    assert not table_like("a\nb\nc\n")


def test_there_are_benchmarks() -> None:
    assert len(BENCHMARKS) >= 5
    assert {"overhead.py", "sim_round.py"} <= {p.name for p in BENCHMARKS}


@pytest.mark.parametrize(
    "script",
    [
        pytest.param(p, id=p.stem, marks=[pytest.mark.slow] if p.name in SLOW else [])
        for p in BENCHMARKS
    ],
)
def test_quick_form_runs(script: Path, tmp_path: Path) -> None:
    if script.name in NEEDS_CONTRACTS and not CONTRACTS_STACK:
        pytest.skip(f"{script.name} needs the contracts stack (vyper, titanoboa), not installed")
    extra = [OUT_OPTION[script.name], str(tmp_path)] if script.name in OUT_OPTION else []
    proc = subprocess.run(
        [sys.executable, str(script), "--quick", *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3600 if script.name in SLOW else 900,
    )
    assert proc.returncode == 0, (
        f"{script.name} --quick exited with {proc.returncode}\n"
        f"stdout:\n{proc.stdout[-2000:]}\nstderr:\n{proc.stderr[-4000:]}"
    )
    assert table_like(proc.stdout), f"{script.name} --quick printed no table:\n{proc.stdout}"
