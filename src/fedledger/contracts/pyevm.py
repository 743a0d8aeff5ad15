"""The in-process chain: py-evm through titanoboa, one isolated ``boa.Env`` per backend.

Transactions run as message calls at the current block (titanoboa does not build signed
transactions), so ``gas_used`` is the execution gas plus the intrinsic 21,000 and the
EIP-2028 calldata gas: the figure a real transaction's receipt shows, without refunds.
Every log is kept in order, so ``logs`` answers for the whole history.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import boa
from boa.contracts.base_evm_contract import BoaError
from boa.contracts.vyper.vyper_contract import VyperContract, VyperDeployer

from fedledger.contracts.backend import (
    INTRINSIC_GAS,
    ChainError,
    ContractSource,
    LogRecord,
    Receipt,
    calldata_gas,
)
from fedledger.contracts.eth import checksum


@lru_cache(maxsize=8)
def _deployer(name: str, text: str) -> VyperDeployer:
    """Compiles once per process and source text (the compiler is the slow part)."""
    return boa.loads_partial(text, name=name)


def _plain(value: Any) -> Any:
    """Titanoboa's decoded values as plain Python: addresses as checksummed strings,
    structs as tuples of (field, value), arrays as tuples."""
    if hasattr(value, "_asdict"):
        return tuple((k, _plain(v)) for k, v in value._asdict().items())
    if isinstance(value, list | tuple):
        return tuple(_plain(v) for v in value)
    if type(value).__name__ == "Address":
        return checksum(str(value))
    return value


class PyEvmBackend:
    """A private chain in this process; deterministic for a given call sequence."""

    def __init__(self, chain_id: int = 1337, start_time: int = 1_700_000_000) -> None:
        self._env = boa.Env()
        self._env.evm.patch.chain_id = chain_id
        self._env.evm.patch.timestamp = start_time
        self._env.evm.patch.block_number = 1
        self._contracts: dict[str, VyperContract] = {}
        self._logs: list[LogRecord] = []
        self._tx_index = 0

    @property
    def chain_id(self) -> int:
        return int(self._env.evm.patch.chain_id)

    @property
    def block_number(self) -> int:
        return int(self._env.evm.patch.block_number)

    @property
    def timestamp(self) -> int:
        return int(self._env.evm.patch.timestamp)

    def fund(self, address: str, wei: int) -> None:
        self._env.set_balance(checksum(address), wei)

    def balance(self, address: str) -> int:
        return int(self._env.get_balance(address))

    def _contract(self, address: str) -> VyperContract:
        try:
            return self._contracts[checksum(address)]
        except KeyError:
            known = ", ".join(self._contracts) or "(none)"
            raise ChainError(f"no contract deployed at {address}; deployed: {known}") from None

    def _receipt(self, fn: str, contract: VyperContract, ok: bool, value: Any, err: str) -> Receipt:
        comp = contract._computation
        data = bytes(comp.msg.data) if comp is not None else b""
        gas = (comp.get_gas_used() if comp is not None else 0) + INTRINSIC_GAS + calldata_gas(data)
        logs: tuple[LogRecord, ...] = ()
        if ok:
            logs = tuple(
                LogRecord(
                    address=contract_address_of(contract),
                    event=type(ev).__name__,
                    args=tuple((k, _plain(v)) for k, v in ev._asdict().items() if k != "address"),
                    block=self.block_number,
                    tx_index=self._tx_index,
                )
                for ev in contract.get_logs()
            )
            self._logs.extend(logs)
        receipt = Receipt(
            fn=fn, status=ok, gas_used=gas, logs=logs, block=self.block_number,
            tx_index=self._tx_index, error=err, value=_plain(value) if ok else None,
            contract_address=contract_address_of(contract),
        )
        self._tx_index += 1
        return receipt

    def deploy(
        self, source: ContractSource, sender: str, args: tuple[Any, ...] = (), value: int = 0
    ) -> Receipt:
        deployer = _deployer(source.name, source.text())
        with boa.swap_env(self._env):
            contract = deployer.deploy(*args, value=value, sender=sender)
        self._contracts[contract_address_of(contract)] = contract
        return Receipt(
            fn="__init__", status=True, gas_used=0, logs=(), block=self.block_number,
            tx_index=self._tx_index, contract_address=contract_address_of(contract),
        )

    def transact(
        self, sender: str, address: str, fn: str, args: tuple[Any, ...] = (), value: int = 0
    ) -> Receipt:
        contract = self._contract(address)
        method = getattr(contract, fn, None)
        if method is None or not callable(method):
            raise ChainError(f"contract at {address} has no function {fn!r}")
        try:
            out = method(*args, value=value, sender=sender)
        except BoaError as exc:
            return self._receipt(fn, contract, False, None, _reason(exc))
        return self._receipt(fn, contract, True, out, "")

    def call(self, address: str, fn: str, args: tuple[Any, ...] = ()) -> Any:
        contract = self._contract(address)
        method = getattr(contract, fn, None)
        if method is None:
            raise ChainError(f"contract at {address} has no function {fn!r}")
        return _plain(method(*args))

    def logs(
        self, address: str, from_block: int = 0, to_block: int | None = None
    ) -> list[LogRecord]:
        want = checksum(address)
        last = self.block_number if to_block is None else to_block
        return [r for r in self._logs if r.address == want and from_block <= r.block <= last]

    def mine(self, timestamp: int | None = None) -> int:
        patch = self._env.evm.patch
        if timestamp is not None:
            if timestamp < patch.timestamp:
                raise ChainError(
                    f"block timestamp {timestamp} is before the current {patch.timestamp}"
                )
            patch.timestamp = timestamp
        patch.block_number += 1
        self._tx_index = 0
        return int(patch.block_number)


def contract_address_of(contract: VyperContract) -> str:
    return checksum(str(contract.address))


def _reason(exc: BoaError) -> str:
    """The revert reason string, or the last line of titanoboa's trace."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for line in lines:
        if line.startswith("[E]") and "<" in line:
            return line[line.rindex("<") + 1 : line.rindex(">")] if line.endswith(">") else line
    return lines[-1] if lines else type(exc).__name__
