"""The simulator's chain host: one shared in-process EVM per simulation, producing blocks.

It executes the chain effects (:mod:`fedledger.contracts.effects`) against one
:class:`~fedledger.contracts.pyevm.PyEvmBackend`. Every block's ``block.timestamp`` is
the chain's start time plus the whole virtual seconds elapsed when it is mined.

- ``block_time`` 0 (instant): each transaction is mined at once in a block of its own;
  its receipt (to the sender) and logs (to every subscriber, in node-id order) are
  delivered at the same virtual time, in that order.
- ``block_time`` > 0: a transaction waits in the pool and is included in the next
  block, in arrival order; the block is mined at a boundary of ``block_time`` seconds
  (``fixed``) or after an exponential gap of mean ``block_time`` (``exponential``, a
  PoW chain; memoryless, so the gap is drawn when the first waiting transaction
  arrives, from a generator seeded by ``seed``). At the block's time each transaction's
  receipt goes to its sender and then its logs to every subscriber. Only blocks that
  carry transactions are simulated; the empty ones between them change nothing.

The host schedules a block by handing the simulator a callable event (``_Block``),
which the simulator runs at its time instead of delivering it to a node.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

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


@dataclass(frozen=True)
class _Block:
    """A block to mine at ``time``: the simulator calls it instead of delivering it."""

    time: float
    mine: Callable[[], None]

    def __call__(self) -> None:
        self.mine()


class ChainHost:
    """One chain shared by the ``subscribers`` of ``spec``; attach it to a host's table."""

    def __init__(self, spec: ContractSpec, subscribers: Iterable[NodeId], seed: int = 0) -> None:
        self.spec = spec
        self.subscribers = tuple(sorted(set(subscribers)))
        self.backend = PyEvmBackend(chain_id=spec.chain_id, start_time=START_TIME)
        for address, wei in spec.accounts:
            self.backend.fund(address, wei)
        self.receipts: list[tuple[NodeId, Receipt]] = []  # every transaction, in order
        self.blocks: list[tuple[float, int, int]] = []  # (virtual time, number, transactions)
        self._rng = random.Random(f"chainhost/{seed}")
        self._pool: list[tuple[NodeId, ContractDeploy | ContractCall]] = []
        self._next_block: float | None = None
        self._deliver: Deliver | None = None
        self._clock: Clock | None = None

    def attach(self, table: EffectTable, deliver: Deliver, clock: Clock) -> None:
        """Register the chain effects in ``table``; events go out through ``deliver``."""
        self._deliver, self._clock = deliver, clock
        table.add(ContractDeploy, self.deploy)
        table.add(ContractCall, self.call)

    # ------------------------------------------------------------ effects

    def deploy(self, node_id: NodeId, effect: ContractDeploy) -> None:
        self._submit(node_id, effect)

    def call(self, node_id: NodeId, effect: ContractCall) -> None:
        self._submit(node_id, effect)

    def _submit(self, node_id: NodeId, effect: ContractDeploy | ContractCall) -> None:
        now = self._now()
        if self.spec.block_time == 0.0:
            self._open_block(now)
            self._execute(node_id, effect, now)
            self.blocks.append((now, self.backend.block_number, 1))
            return
        self._pool.append((node_id, effect))
        if self._next_block is None:
            self._next_block = self.next_block_time(now)
            assert self._deliver is not None
            self._deliver(node_id, _Block(self._next_block, self._mine_pool))

    def next_block_time(self, now: float) -> float:
        """When the block that includes a transaction arriving at ``now`` is mined."""
        bt = self.spec.block_time
        if self.spec.block_mode == "fixed":
            return (math.floor(now / bt) + 1) * bt
        return now + self._rng.expovariate(1.0 / bt)

    def _mine_pool(self) -> None:
        now = self._now()
        pool, self._pool, self._next_block = self._pool, [], None
        self._open_block(now)
        for node_id, effect in pool:
            self._execute(node_id, effect, now)
        self.blocks.append((now, self.backend.block_number, len(pool)))

    # ------------------------------------------------------------ execution

    def _open_block(self, now: float) -> None:
        """Open a new block whose timestamp is the virtual time ``now``."""
        self.backend.mine(max(self.backend.timestamp, START_TIME + int(now)))

    def _execute(self, node_id: NodeId, effect: ContractDeploy | ContractCall, now: float) -> None:
        try:
            if isinstance(effect, ContractDeploy):
                receipt = self.backend.deploy(
                    self.spec.source, effect.sender, effect.args, value=effect.value
                )
            else:
                receipt = self.backend.transact(
                    effect.sender, effect.address, effect.function, effect.args,
                    value=effect.value,
                )
        except ChainError as err:  # refused before execution (no such contract or function)
            self._send(node_id, ContractReceipt(now, effect.call_id, False, 0, (), error=str(err)))
            return
        self.receipts.append((node_id, receipt))
        self._send(
            node_id,
            ContractReceipt(
                now, effect.call_id, receipt.status, receipt.gas_used, receipt.logs,
                address=receipt.contract_address, error=receipt.error, block=receipt.block,
            ),
        )
        for log in receipt.logs:
            for sub in self.subscribers:
                self._send(sub, ContractLog(now, log))

    def _now(self) -> float:
        if self._deliver is None or self._clock is None:
            raise ChainError("the chain host is not attached to a host (ChainHost.attach)")
        return self._clock()

    def _send(self, node_id: NodeId, event: object) -> None:
        assert self._deliver is not None
        self._deliver(node_id, event)
