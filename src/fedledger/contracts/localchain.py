"""Starting and stopping a local Ethereum JSON-RPC chain in its own process.

Two kinds: ``devchain`` (``python -m fedledger.contracts.rpcserver``: py-evm behind
JSON-RPC, always available) and ``ganache`` (ganache 7 from npm, when installed: found
on ``PATH`` or at ``GANACHE_PATHS``). Either answers on ``127.0.0.1`` at a free port,
with the spec's genesis balances set and its chain id. The caller stops it with
:meth:`LocalChain.stop` (or uses it as a context manager).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fedledger.contracts.backend import ChainError

CHAIN_KINDS = ("devchain", "ganache")
#: the EVM version to compile for on each kind (ganache 7 stops at Shanghai)
EVM_VERSIONS: dict[str, str | None] = {"devchain": None, "ganache": "shanghai"}
#: where ``npm install --prefix .npm-tools ganache@7`` puts ganache, relative to a checkout
GANACHE_PATHS = (Path(".npm-tools/node_modules/.bin/ganache"),)


def find_ganache(root: Path | None = None) -> Path | None:
    """The ganache executable: on PATH, else under ``root`` (or the cwd) at GANACHE_PATHS,
    or None."""
    found = shutil.which("ganache")
    if found:
        return Path(found)
    base = root or Path.cwd()
    for rel in GANACHE_PATHS:
        for where in (base, *base.parents):
            if (where / rel).exists():
                return where / rel
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalChain:
    """A running chain process and its URL."""

    kind: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path | None = None

    def stop(self, timeout: float = 10.0) -> int:
        """Stop the process (SIGTERM, then SIGKILL after ``timeout``); its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        return int(self.process.returncode)

    def __enter__(self) -> LocalChain:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_chain(
    kind: str = "devchain",
    chain_id: int = 1337,
    accounts: tuple[tuple[str, int], ...] = (),
    log_path: Path | None = None,
    ganache: Path | None = None,
    ready_timeout: float = 60.0,
    block_time: float = 0.0,
    block_mode: str = "fixed",
    seed: int = 0,
) -> LocalChain:
    """Start a chain of ``kind`` and wait until it answers; genesis ``accounts`` funded.
    ``block_time`` > 0: blocks at that interval (``fixed``) or with exponential gaps of
    that mean (``exponential``; the dev chain only, ganache mines at fixed intervals)."""
    if kind not in CHAIN_KINDS:
        raise ChainError(f"chain kind {kind!r}: allowed {CHAIN_KINDS}")
    if kind == "ganache" and block_time > 0 and block_mode != "fixed":
        raise ChainError(f"ganache mines at fixed intervals only, not {block_mode!r} ones; "
                         "use the devchain kind")
    port = free_port()
    if kind == "devchain":
        cmd = [sys.executable, "-m", "fedledger.contracts.rpcserver", "--port", str(port),
               "--chain-id", str(chain_id)]
        cmd += [f"--fund={a}={wei}" for a, wei in accounts]
        cmd += ["--block-time", str(block_time), "--block-mode", block_mode, "--seed", str(seed)]
    else:
        exe = ganache or find_ganache()
        if exe is None:
            raise ChainError(
                "ganache not found: install it with "
                "`npm install --prefix .npm-tools ganache@7` or put it on PATH"
            )
        cmd = [str(exe), "--server.host", "127.0.0.1", "--server.port", str(port),
               "--chain.chainId", str(chain_id), "--wallet.totalAccounts", "1",
               "--miner.blockGasLimit", "30000000", "--logging.quiet"]
        if block_time > 0:
            cmd += ["--miner.blockTime", str(block_time)]
    out = open(log_path, "ab") if log_path is not None else subprocess.DEVNULL  # noqa: SIM115
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    if log_path is not None:
        out.close()  # type: ignore[union-attr]
    chain = LocalChain(kind, f"http://127.0.0.1:{port}", process, log_path)
    try:
        _wait_ready(chain, ready_timeout)
        if kind == "ganache" and accounts:
            from fedledger.contracts.rpc import RpcBackend

            backend = RpcBackend(chain.url, evm_version=EVM_VERSIONS[kind])
            for address, wei in accounts:
                backend.fund(address, wei)
    except BaseException:
        chain.stop()
        raise
    return chain


def _wait_ready(chain: LocalChain, timeout: float) -> None:
    import json
    import urllib.request

    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if chain.process.poll() is not None:
            raise ChainError(
                f"the {chain.kind} chain exited with code {chain.process.returncode} "
                f"before answering (log: {chain.log_path})"
            )
        try:
            req = urllib.request.Request(chain.url, body.encode(),
                                         {"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=2) as reply:
                if "result" in json.loads(reply.read()):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise ChainError(f"the {chain.kind} chain did not answer at {chain.url} in {timeout} s")
