"""The simulator's chain host: one shared in-process EVM per simulation.

It executes the chain effects (:mod:`fedledger.contracts.effects`) against one
:class:`~fedledger.contracts.pyevm.PyEvmBackend`. With instant blocks (``block_time`` 0,
the only mode implemented) each transaction is mined in a block of its own whose
``block.timestamp`` is the chain's start time plus the whole virtual seconds elapsed, and
its receipt (to the sender) and logs (to every subscriber, in node-id order) are delivered
at the same virtual time, in that order. Fixed and exponential block times and the
real-node (JSON-RPC) host are not implemented.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from fedledger.contracts.backend import ChainError, Receipt
from fedledger.contracts.effects import (
    ContractCall,
    ContractDeploy,
    ContractLog,
    ContractReceipt,
    ContractSpec,
)
from fedledger.contracts.pyevm import PyEvmBackend
from fedledger.protocols.base import NodeId
from fedledger.runtime.effects import EffectTable

#: How the host hands an event to a node: (node, event) queued at ``event.time``.
Deliver = Callable[[NodeId, object], None]
Clock = Callable[[], float]

START_TIME = 1_700_000_000


class ChainHost:
    """One chain shared by the ``subscribers`` of ``spec``; attach it to a host's table."""

    def __init__(self, spec: ContractSpec, subscribers: Iterable[NodeId]) -> None:
        self.spec = spec
        self.subscribers = tuple(sorted(set(subscribers)))
        self.backend = PyEvmBackend(chain_id=spec.chain_id, start_time=START_TIME)
        for address, wei in spec.accounts:
            self.backend.fund(address, wei)
        self.receipts: list[tuple[NodeId, Receipt]] = []  # every transaction, in order
        self._deliver: Deliver | None = None
        self._clock: Clock | None = None

    def attach(self, table: EffectTable, deliver: Deliver, clock: Clock) -> None:
        """Register the chain effects in ``table``; events go out through ``deliver``."""
        self._deliver, self._clock = deliver, clock
        table.add(ContractDeploy, self.deploy)
        table.add(ContractCall, self.call)

    def deploy(self, node_id: NodeId, effect: ContractDeploy) -> None:
        try:
            receipt = self.backend.deploy(
                self.spec.source, effect.sender, effect.args, value=effect.value
            )
        except ChainError as err:
            self._answer(node_id, effect.call_id, None, str(err))
            return
        self._answer(node_id, effect.call_id, receipt, "")

    def call(self, node_id: NodeId, effect: ContractCall) -> None:
        try:
            receipt = self.backend.transact(
                effect.sender, effect.address, effect.function, effect.args, value=effect.value
            )
        except ChainError as err:
            self._answer(node_id, effect.call_id, None, str(err))
            return
        self._answer(node_id, effect.call_id, receipt, receipt.error)

    def _answer(self, node_id: NodeId, call_id: str, receipt: Receipt | None, err: str) -> None:
        if self._deliver is None or self._clock is None:
            raise ChainError("the chain host is not attached to a host (ChainHost.attach)")
        now = self._clock()
        if receipt is None:  # refused before execution (no such contract or function)
            self._deliver(node_id, ContractReceipt(now, call_id, False, 0, (), error=err))
            return
        self.receipts.append((node_id, receipt))
        self._deliver(
            node_id,
            ContractReceipt(
                now, call_id, receipt.status, receipt.gas_used, receipt.logs,
                address=receipt.contract_address, error=err, block=receipt.block,
            ),
        )
        for log in receipt.logs:
            for sub in self.subscribers:
                self._deliver(sub, ContractLog(now, log))
        self.backend.mine(START_TIME + int(now))
