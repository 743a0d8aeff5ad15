"""Where a run keeps its files: the one description of the run-directory layout.

Every layer reads and writes a run through these two objects (plain paths, no I/O
besides ``ensure``), so the layout is written down once::

    RUN_DIR/
      config.yaml          the resolved experiment config
      metrics.csv          every measured model (node, role, honest, step, ...)
      metrics.jsonl        every emitted metric row
      summary.json         the run summary (common fields, one section per protocol)
      detection.csv, ...   protocol reports' tables (``RunLayout.table``)
      plots/*.png          plots
      nodes/<id>/          one node's state:
        ledger.sqlite        its main chain; other chains in chain-<name>.sqlite
        blobs/               its content-addressed blob store
        metrics.jsonl        a node process's journal (localnet)
        status.json          a node process's status snapshot (localnet)
        node.log             a node process's log (localnet)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MAIN_CHAIN = "main"


@dataclass(frozen=True)
class NodeLayout:
    """The files of one node under ``RUN_DIR/nodes/<id>/``."""

    root: Path

    LEDGER_FILE = "ledger.sqlite"
    BLOBS_DIR = "blobs"
    JOURNAL_FILE = "metrics.jsonl"
    STATUS_FILE = "status.json"
    LOG_FILE = "node.log"

    @property
    def node_id(self) -> str:
        return self.root.name

    def chain(self, name: str = MAIN_CHAIN) -> Path:
        """The database of chain ``name`` (the main chain is ``ledger.sqlite``)."""
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"chain name {name!r}: allowed a non-empty name without '/'")
        return self.root / (self.LEDGER_FILE if name == MAIN_CHAIN else f"chain-{name}.sqlite")

    @property
    def ledger(self) -> Path:
        return self.chain(MAIN_CHAIN)

    @property
    def blobs(self) -> Path:
        return self.root / self.BLOBS_DIR

    @property
    def journal(self) -> Path:
        return self.root / self.JOURNAL_FILE

    @property
    def status(self) -> Path:
        return self.root / self.STATUS_FILE

    @property
    def log(self) -> Path:
        return self.root / self.LOG_FILE


@dataclass(frozen=True)
class RunLayout:
    """The files of one run directory (see the module doc)."""

    root: Path

    CONFIG_FILE = "config.yaml"
    METRICS_CSV = "metrics.csv"
    METRICS_JSONL = "metrics.jsonl"
    SUMMARY_FILE = "summary.json"
    PLOTS_DIR = "plots"
    NODES_DIR = "nodes"

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def config(self) -> Path:
        return self.root / self.CONFIG_FILE

    @property
    def metrics_csv(self) -> Path:
        return self.root / self.METRICS_CSV

    @property
    def metrics_jsonl(self) -> Path:
        return self.root / self.METRICS_JSONL

    @property
    def summary(self) -> Path:
        return self.root / self.SUMMARY_FILE

    @property
    def plots(self) -> Path:
        return self.root / self.PLOTS_DIR

    def plot(self, name: str) -> Path:
        """``plots/<name>`` (the folder is created on first use by the writer)."""
        return self.plots / _plain(name, "plot")

    def table(self, name: str) -> Path:
        """A report's table at the top of the run directory, e.g. ``detection.csv``."""
        return self.root / _plain(name, "table")

    @property
    def nodes(self) -> Path:
        return self.root / self.NODES_DIR

    def node(self, node_id: str) -> NodeLayout:
        return NodeLayout(self.nodes / _plain(node_id, "node id"))

    def node_ids(self) -> list[str]:
        """The nodes that have a directory here, sorted."""
        if not self.nodes.is_dir():
            return []
        return sorted(d.name for d in self.nodes.iterdir() if d.is_dir())

    def ensure(self) -> RunLayout:
        """Create the run directory (and its parents) if missing; return self."""
        self.root.mkdir(parents=True, exist_ok=True)
        return self


def _plain(name: str, what: str) -> str:
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ValueError(f"{what} {name!r}: allowed a plain file name without '/'")
    return name
