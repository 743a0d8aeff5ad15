"""A development chain behind Ethereum JSON-RPC: py-evm (titanoboa's ``Env``) answering
the methods web3 needs, one method per ``eth_*`` / ``evm_*`` name.

It is the in-process EVM a localnet starts in its own process (``python -m
fedledger.contracts.rpcserver``) when no external node is wanted. Like a node in
development mode (ganache, geth --dev, anvil with auto-impersonation):

- every account is unlocked: ``eth_sendTransaction`` runs as a message call from
  ``from`` without a signature (the contract's own proofs are checked with
  ``ecrecover`` inside the EVM, so nothing the protocol relies on is skipped);
- ``eth_sendRawTransaction`` takes a transaction its sender signed (legacy EIP-155 or
  typed, decoded and recovered by py-evm): its signature, chain id and nonce are checked
  (the nonce: transactions the sender sent here so far, by either method); its hash is
  the keccak256 of the raw bytes, as on any Ethereum node;
- each transaction is mined at once in a block of its own (instamine), whose timestamp is
  the wall clock (never earlier than the previous block); or, with ``block_time`` > 0,
  pooled and mined in the next block, which the server's miner thread closes every
  ``block_time`` seconds (``fixed``) or after exponential gaps of that mean
  (``exponential``, seeded); ``evm_mine`` mines a block (with the pool), optionally at a
  given timestamp; gas is metered but not charged (gas price 0);
- a reverted transaction is mined with status 0 and its reason in the receipt's
  ``revertReason`` (as Hyperledger Besu does); a reverted ``eth_call`` answers error 3
  with the revert data, as geth does.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boa
from boa.util.abi import Address
from eth_abi import decode as abi_decode

from fedledger.contracts.backend import INTRINSIC_GAS, calldata_gas
from fedledger.contracts.eth import checksum, keccak256

CREATE_GAS = 53_000
ERROR_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
BLOCK_GAS_LIMIT = 30_000_000


class RpcFault(Exception):
    """A JSON-RPC error answer: ``code``, ``message`` and optional ``data``."""

    def __init__(self, code: int, message: str, data: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


def _hex(value: int) -> str:
    return hex(value)


def _bytes_hex(data: bytes) -> str:
    return "0x" + data.hex()


def _int(value: Any, default: int = 0) -> int:
    if value is None:
        return default
    return int(value, 16) if isinstance(value, str) else int(value)


def _data(value: Any) -> bytes:
    if not value:
        return b""
    text = value[2:] if value.startswith("0x") else value
    return bytes.fromhex(text)


def revert_reason(output: bytes) -> str:
    """The Error(string) reason of a revert's output, or "" when it carries none."""
    if output[:4] == ERROR_SELECTOR:
        try:
            return str(abi_decode(["string"], output[4:])[0])
        except Exception:  # malformed revert data: no reason to show
            return ""
    return ""


@dataclass
class _Block:
    number: int
    timestamp: int
    txs: list[str] = field(default_factory=list)
    gas_used: int = 0

    @property
    def hash(self) -> str:
        return _bytes_hex(keccak256(b"fedledger-devchain-block" + self.number.to_bytes(32, "big")))


class DevChain:
    """The chain's state and its JSON-RPC methods (``handle(method, params)``)."""

    def __init__(
        self, chain_id: int = 1337, clock: Callable[[], float] = time.time,
        start_time: int | None = None, block_time: float = 0.0, block_mode: str = "fixed",
        seed: int = 0,
    ) -> None:
        if not block_time >= 0.0 or block_mode not in ("fixed", "exponential"):
            raise ValueError(f"block_time {block_time} s, block_mode {block_mode!r}: allowed "
                             "block_time >= 0 and block_mode 'fixed' or 'exponential'")
        self.block_time, self.block_mode = block_time, block_mode
        self._rng = random.Random(f"devchain/{seed}")
        self.pending: list[tuple[str, dict[str, Any]]] = []  # interval mining's pool
        self.env = boa.Env()
        self.env.evm.patch.chain_id = chain_id
        self.clock = clock
        first = int(clock()) if start_time is None else start_time
        self.env.evm.patch.timestamp = first
        self.env.evm.patch.block_number = 0
        self.blocks: list[_Block] = [_Block(0, first)]
        self.receipts: dict[str, dict[str, Any]] = {}
        self.txs: dict[str, dict[str, Any]] = {}
        self.logs: list[dict[str, Any]] = []
        self._tx_count = 0
        self._sent: dict[str, int] = {}  # transactions each sender sent (its next nonce)
        self._mined: dict[str, int] = {}  # ... and of them mined

    @property
    def chain_id(self) -> int:
        return int(self.env.evm.patch.chain_id)

    def next_gap(self) -> float:
        """Seconds to the next block when mining at intervals (``block_time`` > 0)."""
        if self.block_mode == "fixed":
            return self.block_time
        return self._rng.expovariate(1.0 / self.block_time)

    def mine_pending(self, timestamp: int | None = None) -> int:
        """Mine one block with every pooled transaction, in arrival order; its number."""
        block = self._open_block(timestamp)
        pending, self.pending = self.pending, []
        for index, (tx_hash, tx) in enumerate(pending):
            self._apply(block, index, tx_hash, tx)
        return block.number

    # ------------------------------------------------------------ dispatch

    def handle(self, method: str, params: list[Any]) -> Any:
        fn = getattr(self, "rpc_" + method, None)
        if fn is None:
            raise RpcFault(-32601, f"method {method!r} not supported by the fedledger dev chain")
        return fn(*params)

    # ------------------------------------------------------------ blocks

    def _open_block(self, timestamp: int | None = None) -> _Block:
        prev = self.blocks[-1]
        ts = max(prev.timestamp, int(self.clock()) if timestamp is None else timestamp)
        block = _Block(prev.number + 1, ts)
        patch = self.env.evm.patch
        patch.block_number, patch.timestamp = block.number, ts
        self.blocks.append(block)
        return block

    def _block(self, tag: Any) -> _Block:
        if tag in (None, "latest", "pending", "safe", "finalized"):
            return self.blocks[-1]
        if tag == "earliest":
            return self.blocks[0]
        number = _int(tag)
        if not 0 <= number < len(self.blocks):
            raise RpcFault(-32000, f"block {number} not found; head is {len(self.blocks) - 1}")
        return self.blocks[number]

    def _bound(self, tag: Any, default: int, head: int) -> int:
        if tag is None:
            return default
        if tag in ("latest", "pending", "safe", "finalized"):
            return head
        return 0 if tag == "earliest" else _int(tag)

    # ------------------------------------------------------------ plain queries

    def rpc_web3_clientVersion(self) -> str:
        return "fedledger-devchain/py-evm"

    def rpc_net_version(self) -> str:
        return str(self.chain_id)

    def rpc_eth_chainId(self) -> str:
        return _hex(self.chain_id)

    def rpc_eth_blockNumber(self) -> str:
        return _hex(self.blocks[-1].number)

    def rpc_eth_gasPrice(self) -> str:
        return "0x0"

    def rpc_eth_accounts(self) -> list[str]:
        return []

    def rpc_eth_getBalance(self, address: str, block: Any = "latest") -> str:
        return _hex(self.env.get_balance(checksum(address)))

    def rpc_eth_getCode(self, address: str, block: Any = "latest") -> str:
        return _bytes_hex(bytes(self.env.get_code(Address(checksum(address)))))

    def rpc_eth_getTransactionCount(self, address: str, block: Any = "latest") -> str:
        sender = checksum(address)
        state = self.env.evm.vm.state.get_nonce(Address(sender).canonical_address)
        counted = (self._sent if block == "pending" else self._mined).get(sender, 0)
        return _hex(max(state, counted))

    def rpc_eth_getBlockByNumber(self, tag: Any, full: bool = False) -> dict[str, Any]:
        b = self._block(tag)
        parent = self.blocks[b.number - 1].hash if b.number else "0x" + "00" * 32
        return {
            "number": _hex(b.number), "hash": b.hash, "parentHash": parent,
            "timestamp": _hex(b.timestamp), "gasLimit": _hex(BLOCK_GAS_LIMIT),
            "gasUsed": _hex(b.gas_used), "transactions": list(b.txs),
            "miner": "0x" + "00" * 20, "difficulty": "0x0", "extraData": "0x",
            "nonce": "0x0000000000000000", "size": "0x0", "uncles": [],
            "logsBloom": "0x" + "00" * 256, "sha3Uncles": "0x" + "00" * 32,
            "stateRoot": "0x" + "00" * 32, "receiptsRoot": "0x" + "00" * 32,
            "transactionsRoot": "0x" + "00" * 32, "mixHash": "0x" + "00" * 32,
        }

    def rpc_eth_getTransactionReceipt(self, tx_hash: str) -> dict[str, Any] | None:
        return self.receipts.get(tx_hash.lower())

    def rpc_eth_getTransactionByHash(self, tx_hash: str) -> dict[str, Any] | None:
        return self.txs.get(tx_hash.lower())

    def rpc_eth_getLogs(self, flt: dict[str, Any]) -> list[dict[str, Any]]:
        head = self.blocks[-1].number
        first, last = (self._bound(flt.get(k), d, head) for k, d in
                       (("fromBlock", 0), ("toBlock", head)))  # past the head: no logs
        want = flt.get("address")
        addresses = None if want is None else {
            a.lower() for a in (want if isinstance(want, list) else [want])
        }
        topics = flt.get("topics") or []
        out = []
        for log in self.logs:
            if not first <= int(log["blockNumber"], 16) <= last:
                continue
            if addresses is not None and log["address"].lower() not in addresses:
                continue
            if not _topics_match(log["topics"], topics):
                continue
            out.append(log)
        return out

    # ------------------------------------------------------------ dev controls

    def rpc_evm_mine(self, timestamp: Any = None) -> str:
        if isinstance(timestamp, dict):
            timestamp = timestamp.get("timestamp")
        self.mine_pending(None if timestamp is None else _int(timestamp))
        return "0x0"

    def rpc_evm_setAccountBalance(self, address: str, wei: Any) -> bool:
        self.env.set_balance(checksum(address), _int(wei))
        return True

    def rpc_evm_addAccount(self, address: str, passphrase: str = "") -> bool:
        return True  # every account is unlocked here

    def rpc_personal_unlockAccount(self, address: str, *rest: Any) -> bool:
        return True

    # ------------------------------------------------------------ execution

    def rpc_eth_call(self, tx: dict[str, Any], block: Any = "latest") -> str:
        if block not in (None, "latest", "pending") and self._block(block) is not self.blocks[-1]:
            raise RpcFault(-32000, "the dev chain answers eth_call at the latest block only")
        comp = self.env.execute_code(
            to_address=checksum(tx["to"]), sender=checksum(tx.get("from") or "0x" + "00" * 20),
            gas=_int(tx.get("gas"), BLOCK_GAS_LIMIT), value=_int(tx.get("value")),
            data=_data(tx.get("data") or tx.get("input")), simulate=True,
        )
        if comp.is_error:
            out = bytes(comp.output)
            reason = revert_reason(out)
            raise RpcFault(3, f"execution reverted: {reason}".rstrip(": "), _bytes_hex(out))
        return _bytes_hex(bytes(comp.output))

    def rpc_eth_estimateGas(self, tx: dict[str, Any], block: Any = "latest") -> str:
        data = _data(tx.get("data") or tx.get("input"))
        sender = checksum(tx.get("from") or "0x" + "00" * 20)
        value = _int(tx.get("value"))
        if tx.get("to"):
            comp = self.env.execute_code(
                to_address=checksum(tx["to"]), sender=sender, gas=BLOCK_GAS_LIMIT,
                value=value, data=data, simulate=True,
            )
            if comp.is_error:
                out = bytes(comp.output)
                raise RpcFault(3, f"execution reverted: {revert_reason(out)}", _bytes_hex(out))
            return _hex(comp.get_gas_used() + INTRINSIC_GAS + calldata_gas(data))
        return _hex(BLOCK_GAS_LIMIT // 2)

    def rpc_eth_sendTransaction(self, tx: dict[str, Any]) -> str:
        """A transaction from an (unlocked) account, unsigned."""
        sender = checksum(tx["from"])
        data = _data(tx.get("data") or tx.get("input"))
        tx_hash = _bytes_hex(keccak256(
            b"fedledger-devchain-tx" + self.chain_id.to_bytes(32, "big")
            + self._tx_count.to_bytes(32, "big") + bytes.fromhex(sender[2:]) + data
        ))
        self._tx_count += 1
        return self._accept(tx_hash, tx)

    def rpc_eth_sendRawTransaction(self, raw: str) -> str:
        """A signed transaction: the sender recovered from its signature, its chain id
        and nonce checked (error -32000 naming the bad value), then as above."""
        from eth.vm.forks.cancun.transactions import CancunTransactionBuilder

        data = _data(raw)
        try:
            signed = CancunTransactionBuilder.decode(data)
            signed.check_signature_validity()
            sender = checksum(signed.sender)
        except Exception as exc:  # rlp and signature errors come in many types
            raise RpcFault(-32000, f"invalid raw transaction: {exc}") from None
        if signed.chain_id != self.chain_id:
            raise RpcFault(-32000, f"transaction for chain id {signed.chain_id}; this chain's "
                                   f"id is {self.chain_id}")
        nonce = _int(self.rpc_eth_getTransactionCount(sender, "pending"))
        if signed.nonce != nonce:
            raise RpcFault(-32000, f"nonce {signed.nonce} of {sender}: expected {nonce}")
        tx = {"from": sender, "to": checksum(signed.to) if signed.to else None,
              "data": _bytes_hex(bytes(signed.data)), "value": _hex(signed.value),
              "gas": _hex(signed.gas), "nonce": _hex(signed.nonce)}
        return self._accept(_bytes_hex(keccak256(data)), tx)

    def _accept(self, tx_hash: str, tx: dict[str, Any]) -> str:
        """Instamine (``block_time`` 0), or pool the transaction for the next block."""
        sender = checksum(tx["from"])
        self._sent[sender] = self._sent.get(sender, 0) + 1
        if self.block_time > 0.0:
            self.pending.append((tx_hash, tx))
        else:
            self._apply(self._open_block(), 0, tx_hash, tx)
        return tx_hash

    def _apply(self, block: _Block, index: int, tx_hash: str, tx: dict[str, Any]) -> None:
        sender = checksum(tx["from"])
        data = _data(tx.get("data") or tx.get("input"))
        gas = _int(tx.get("gas"), BLOCK_GAS_LIMIT)
        value = _int(tx.get("value"))
        created: str | None = None
        if tx.get("to"):
            to = checksum(tx["to"])
            comp = self.env.execute_code(
                to_address=to, sender=sender, gas=gas, value=value, data=data
            )
            used = comp.get_gas_used() + INTRINSIC_GAS + calldata_gas(data)
        else:
            address, comp = self.env.deploy(sender=sender, gas=gas, value=value, bytecode=data)
            to, created = None, (None if comp.is_error else checksum(str(address)))
            used = comp.get_gas_used() + CREATE_GAS + calldata_gas(data)
        ok = not comp.is_error
        logs = []
        if ok:
            for i, (account, topics, payload) in enumerate(comp.get_log_entries()):
                logs.append({
                    "address": checksum(bytes(account)),
                    "topics": ["0x" + int(t).to_bytes(32, "big").hex() for t in topics],
                    "data": _bytes_hex(bytes(payload)), "blockNumber": _hex(block.number),
                    "blockHash": block.hash, "transactionHash": tx_hash,
                    "transactionIndex": _hex(index), "logIndex": _hex(len(self.logs) + i),
                    "removed": False,
                })
        block.txs.append(tx_hash)
        self._mined[sender] = self._mined.get(sender, 0) + 1
        block.gas_used += used
        self.logs.extend(logs)
        self.txs[tx_hash] = {
            "hash": tx_hash, "from": sender, "to": to, "input": _bytes_hex(data),
            "value": _hex(value), "gas": _hex(gas), "gasPrice": "0x0",
            "nonce": tx.get("nonce") or "0x0",
            "blockNumber": _hex(block.number), "blockHash": block.hash,
            "transactionIndex": _hex(index), "chainId": _hex(self.chain_id), "type": "0x0",
        }
        self.receipts[tx_hash] = {
            "transactionHash": tx_hash, "transactionIndex": _hex(index), "blockHash": block.hash,
            "blockNumber": _hex(block.number), "from": sender, "to": to,
            "cumulativeGasUsed": _hex(used), "gasUsed": _hex(used),
            "effectiveGasPrice": "0x0", "contractAddress": created, "logs": logs,
            "logsBloom": "0x" + "00" * 256, "status": "0x1" if ok else "0x0", "type": "0x0",
            "revertReason": "" if ok else revert_reason(bytes(comp.output)),
        }


def _topics_match(have: list[str], want: list[Any]) -> bool:
    for i, option in enumerate(want):
        if option is None:
            continue
        if i >= len(have):
            return False
        options = option if isinstance(option, list) else [option]
        if have[i].lower() not in {o.lower() for o in options}:
            return False
    return True
