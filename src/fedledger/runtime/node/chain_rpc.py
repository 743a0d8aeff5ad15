"""The contract chain of a localnet: started by the launcher, reached by nodes over RPC.

Launcher side (:class:`RunChain`): when the protocol's nodes declare a contract
(``NodeResources.contract``), ``fedledger localnet`` starts one chain process for the run
(:func:`fedledger.contracts.localchain.start_chain`: the project's py-evm dev chain, or
ganache 7 with ``FEDLEDGER_CHAIN=ganache``) with the spec's chain id and genesis
balances, and writes ``RUN_DIR/contract/chain.json`` (its URL, kind, EVM version) before
any node starts, with ``signing`` (``node``: senders are the chain's unlocked accounts;
``local``: each node signs its own transactions with its secp256k1 key and sends them
raw; ``FEDLEDGER_CHAIN_SIGNING`` chooses, default ``node``). At the end it records the
chain's history (every transaction with its input and status, every decoded log) in
``RUN_DIR/contract/history.json``, which ``fedledger chain verify`` audits, and stops the
process.

Node side (:class:`RpcChainHost`): the real node host sends ``ContractDeploy`` and
``ContractCall`` through :class:`~fedledger.contracts.rpc.RpcBackend` without waiting
for a block; a poller (every ``POLL_INTERVAL`` s) answers each mined transaction's
``ContractReceipt`` and then hands the node each new block's logs as ``ContractLog``
events, in chain order, so a chain that mines at intervals (``ContractSpec.block_time``)
never holds a node up. With ``signing: local`` in chain.json the host signs with the
node's own secp256k1 key (``NodeServices.extra.eth``: the one registered in the genesis
on a real network), so a protocol whose sender is another address is refused with a
failed receipt naming it. The web3 calls block, so they run in one worker thread; events
are dispatched on the node's event loop with its network time.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fedledger.contracts.backend import ChainError, LogRecord, Receipt
from fedledger.contracts.effects import (
    ContractCall,
    ContractDeploy,
    ContractLog,
    ContractReceipt,
    ContractSpec,
)
from fedledger.contracts.eth import EthKey
from fedledger.contracts.localchain import EVM_VERSIONS, LocalChain, start_chain
from fedledger.runtime.effects import EffectTable

log = logging.getLogger(__name__)

#: seconds between two polls of the chain for new blocks' logs
POLL_INTERVAL = 0.1
#: environment variable choosing the kind of chain a localnet starts
CHAIN_ENV = "FEDLEDGER_CHAIN"
#: environment variable choosing who signs a localnet's transactions (rpc.SIGNING)
SIGNING_ENV = "FEDLEDGER_CHAIN_SIGNING"


def chain_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "contract"


def chain_file(run_dir: Path) -> Path:
    return chain_dir(run_dir) / "chain.json"


def history_file(run_dir: Path) -> Path:
    return chain_dir(run_dir) / "history.json"


# ------------------------------------------------------------------ launcher side


class RunChain:
    """The one chain of a localnet run."""

    def __init__(self, spec: ContractSpec, run_dir: Path, kind: str | None = None,
                 signing: str | None = None) -> None:
        from fedledger.contracts.rpc import SIGNING

        self.spec = spec
        self.run_dir = Path(run_dir)
        self.kind = kind or os.environ.get(CHAIN_ENV, "devchain")
        self.signing = signing or os.environ.get(SIGNING_ENV, "node")
        if self.signing not in SIGNING:
            raise ChainError(f"signing {self.signing!r} ({SIGNING_ENV}): allowed are "
                             f"{', '.join(SIGNING)}")
        self.chain: LocalChain | None = None

    def start(self) -> None:
        chain_dir(self.run_dir).mkdir(parents=True, exist_ok=True)
        self.chain = start_chain(
            self.kind, self.spec.chain_id, self.spec.accounts,
            log_path=chain_dir(self.run_dir) / "chain.log",
            block_time=self.spec.block_time, block_mode=self.spec.block_mode,
        )
        # compiled once here: every node reads the ABI and bytecode instead of compiling
        abi, bytecode = self.backend().compiled(self.spec.source)
        text = self.spec.source.text()
        info = {"url": self.chain.url, "kind": self.kind, "chain_id": self.spec.chain_id,
                "evm_version": EVM_VERSIONS[self.kind], "pid": self.chain.process.pid,
                "source": self.spec.source.name, "signing": self.signing,
                "source_sha256": hashlib.sha256(text.encode()).hexdigest(),
                "abi": list(abi), "bytecode": "0x" + bytecode.hex()}
        tmp = chain_file(self.run_dir).with_suffix(".tmp")
        tmp.write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
        tmp.replace(chain_file(self.run_dir))
        log.info("contract chain (%s) at %s", self.kind, self.chain.url)

    def stop(self) -> None:
        """Record the history (when the chain answers) and stop the process."""
        if self.chain is None:
            return
        try:
            history = record_history(self.backend(), self.spec)
            history_file(self.run_dir).write_text(json.dumps(history, indent=1) + "\n")
        except (ChainError, OSError, ValueError) as exc:
            log.error("could not record the contract chain's history: %s", exc)
        finally:
            self.chain.stop()
            self.chain = None

    def backend(self) -> Any:
        from fedledger.contracts.rpc import RpcBackend

        assert self.chain is not None
        backend = RpcBackend(self.chain.url, evm_version=EVM_VERSIONS[self.kind])
        backend.use_source(self.spec.source)
        return backend


def start_run_chain(protocol: Any, plans: list[Any], run_dir: Path) -> RunChain | None:
    """Start the run's chain when the protocol's nodes declare a contract, else None."""
    from fedledger.assembly.build import declared_contract

    spec, _ = declared_contract(protocol, plans)
    if spec is None:
        return None
    chain = RunChain(spec, run_dir)
    chain.start()
    return chain


def record_history(backend: Any, spec: ContractSpec) -> dict[str, Any]:
    """Every transaction (sender, target, input, status, gas) and decoded log of the chain."""
    head = backend.block_number
    w3 = backend.w3
    txs = []
    for number in range(1, head + 1):
        block = w3.eth.get_block(number)
        for tx_hash in block["transactions"]:
            tx = w3.eth.get_transaction(tx_hash)
            receipt = w3.eth.get_transaction_receipt(tx_hash)
            txs.append({
                "block": number, "timestamp": int(block["timestamp"]),
                "tx_index": int(receipt["transactionIndex"]), "from": tx["from"],
                "to": tx["to"], "input": "0x" + bytes(tx["input"]).hex(),
                "status": int(receipt["status"]), "gas_used": int(receipt["gasUsed"]),
                "contract_address": receipt.get("contractAddress"),
            })
    logs = [_log_json(rec) for rec in backend.all_logs(0, head)]
    return {"chain_id": backend.chain_id, "source": spec.source.name, "head": head,
            "evm_version": backend.evm_version, "transactions": txs, "logs": logs}


def _log_json(rec: LogRecord) -> dict[str, Any]:
    return {"address": rec.address, "event": rec.event, "block": rec.block,
            "tx_index": rec.tx_index, "args": [[k, to_json(v)] for k, v in rec.args]}


def to_json(value: Any) -> Any:
    """A decoded ABI value as JSON: bytes as 0x-hex, tuples as lists."""
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, tuple | list):
        return [to_json(v) for v in value]
    return value


# ------------------------------------------------------------------ node side


class RpcChainHost:
    """Executes one node's chain effects over JSON-RPC; delivers receipts and logs."""

    def __init__(self, spec: ContractSpec, url: str, evm_version: str | None,
                 dispatch: Callable[[object], None], now: Callable[[], float],
                 signing: str = "node", key: EthKey | None = None) -> None:
        if signing == "local" and key is None:
            raise ChainError("signing is local but this node holds no secp256k1 key: its "
                             "protocol must declare one (NodeResources.key_schemes)")
        self.signing = signing
        self.key = key
        self.spec = spec
        self.url = url
        self.evm_version = evm_version
        self._dispatch = dispatch
        self._now = now
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="chain-rpc")
        self._backend: Any = None
        self._next_block = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._poller: asyncio.Task[None] | None = None
        self.receipts: list[Receipt] = []
        self._pending: list[tuple[str, Any]] = []  # (call id, Pending) not yet mined
        self.compiled: dict[str, Any] = {}  # chain.json: the launcher's ABI and bytecode

    @classmethod
    def for_node(cls, host: Any) -> RpcChainHost | None:
        """The chain host of a ``NodeHost`` whose protocol declares a contract (None
        otherwise); its effects registered in the host's table."""
        spec = host.resources.contract
        if spec is None:
            return None
        path = chain_file(host.options.data_dir)
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ChainError(
                f"the protocol declares a contract but {path} names no chain ({exc}); "
                "`fedledger localnet` starts one for the run"
            ) from exc
        signing = str(info.get("signing", "node"))
        key = host.services.extra.eth if signing == "local" else None
        chain = cls(spec, str(info["url"]), info.get("evm_version"), host._dispatch, host._now,
                    signing=signing, key=key)
        chain.compiled = info
        chain.attach(host.effects)
        return chain

    @property
    def waiting(self) -> int:
        """Transactions sent and not yet answered (their block not mined yet)."""
        return len(self._pending)

    def attach(self, table: EffectTable) -> None:
        table.add(ContractDeploy, self.deploy)
        table.add(ContractCall, self.call)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start polling for logs (on the node's loop, once its protocol has started)."""
        self._loop = loop
        self._poller = loop.create_task(self._poll())

    def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------ worker thread

    def _chain(self) -> Any:
        if self._backend is None:
            from fedledger.contracts.rpc import RpcBackend

            keys = (self.key,) if self.key is not None and self.signing == "local" else ()
            self._backend = RpcBackend(self.url, evm_version=self.evm_version,
                                       signing=self.signing, keys=keys)
            self._backend.use_source(self.spec.source)
            info = self.compiled
            if "abi" in info:
                used = self._backend.preload(
                    self.spec.source, info["abi"], bytes.fromhex(info["bytecode"][2:]),
                    str(info.get("source_sha256")),
                )
                if not used:
                    log.warning("%s changed since the launcher compiled it; compiling here",
                                self.spec.source.path)
        return self._backend

    def _post(self, make: Callable[[float], object]) -> None:
        """Dispatch the event ``make(now)`` on the node's loop (from the worker)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(lambda: self._dispatch(make(self._now())))

    def _run(self, effect: ContractDeploy | ContractCall) -> None:
        """Send one transaction (not waiting for its block), then settle what is mined."""
        try:
            if isinstance(effect, ContractDeploy):
                sent = self._chain().submit_deploy(self.spec.source, effect.sender,
                                                   effect.args, value=effect.value)
            else:
                sent = self._chain().submit(effect.sender, effect.address, effect.function,
                                            effect.args, value=effect.value)
        except Exception as exc:  # a chain failure becomes a failed receipt, never a crash
            err = str(exc)
            self._post(lambda t: ContractReceipt(t, effect.call_id, False, 0, (), error=err))
            return
        self._pending.append((effect.call_id, sent))
        self._settle()

    def _settle(self) -> None:
        """Deliver the receipts of mined transactions, then the new blocks' logs: a block
        seen here has all its transactions' receipts, so each comes before its logs."""
        chain = self._chain()
        head = chain.block_number
        waiting = []
        for call_id, sent in self._pending:
            r = chain.receipt(sent)
            if r is None:
                waiting.append((call_id, sent))
                continue
            self.receipts.append(r)
            self._post(lambda t, r=r, call_id=call_id: ContractReceipt(
                t, call_id, r.status, r.gas_used, r.logs, address=r.contract_address,
                error=r.error, block=r.block,
            ))
        self._pending = waiting
        if head < self._next_block:
            return
        records = chain.all_logs(self._next_block, head)
        self._next_block = head + 1
        for rec in records:
            self._post(lambda t, rec=rec: ContractLog(t, rec))

    # ------------------------------------------------------------ effects and polling

    def deploy(self, node_id: str, effect: ContractDeploy) -> None:
        self._pool.submit(self._run, effect)

    def call(self, node_id: str, effect: ContractCall) -> None:
        self._pool.submit(self._run, effect)

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await loop.run_in_executor(self._pool, self._settle)
            except Exception as exc:  # the chain is down or answers garbage: try again
                log.warning("polling the contract chain at %s failed: %s", self.url, exc)
            await asyncio.sleep(POLL_INTERVAL)
