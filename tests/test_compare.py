"""``fedledger compare`` (what ``make run`` shows): runs side by side, headline rows."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from fedledger.assembly.build import build_protocol
from fedledger.assembly.config import load_config
from fedledger.cli import app

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_compare_runs_both_and_shows_what_the_ledger_caught(tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "compare",
            str(CONFIGS / "quickstart-bfl.yaml"),
            str(CONFIGS / "quickstart-vanilla.yaml"),
            "-o",
            "rounds=2",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    for text in ("quickstart-bfl", "quickstart-vanilla", "what the ledger caught", "no ledger"):
        assert text in result.output
    assert "malicious updates" in result.output  # (the table may wrap the line)
    assert (tmp_path / "quickstart-bfl" / "summary.json").exists()
    assert (tmp_path / "quickstart-vanilla" / "summary.json").exists()


def test_compare_needs_two_configs(tmp_path):
    result = CliRunner().invoke(
        app, ["compare", str(CONFIGS / "quickstart-vanilla.yaml"), "--out", str(tmp_path)]
    )
    assert result.exit_code != 0
    assert "2 or more" in result.output


def test_the_quickstart_pair_differs_only_in_protocol():
    bfl = load_config(CONFIGS / "quickstart-bfl.yaml")
    vanilla = load_config(CONFIGS / "quickstart-vanilla.yaml")
    for part in ("data", "model", "train", "seed", "rounds"):
        assert getattr(bfl, part) == getattr(vanilla, part), part
    assert bfl.nodes.count == vanilla.nodes.count
    assert bfl.nodes.malicious == vanilla.nodes.malicious


def test_headlines_read_the_report_sections():
    bfl = build_protocol(load_config(CONFIGS / "quickstart-bfl.yaml"))
    section = {
        "detection": {"TP": 9, "FN": 1, "FP": 2, "TN": 30},
        "honest_chains_identical": True,
        "legal_blocks": 15,
    }
    lines = dict(bfl.headline(section))
    assert lines["what the ledger caught"] == "9 of 10 malicious updates rejected"
    assert lines["honest updates refused"] == "2 of 32 honest updates rejected"
    assert lines["blocks (honest chains)"] == "15 (identical)"
    vanilla = build_protocol(load_config(CONFIGS / "quickstart-vanilla.yaml"))
    assert dict(vanilla.headline({})) == {"what the ledger caught": "no ledger"}
