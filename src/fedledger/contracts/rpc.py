"""The JSON-RPC chain backend: any Ethereum node through web3 (ganache, geth --dev, the
project's own dev chain in :mod:`fedledger.contracts.rpcserver`).

Same seam as the in-process backend (:class:`~fedledger.contracts.backend.ChainBackend`):
the project compiles the Vyper source itself (vyper, no solc download) and web3 encodes
calls and decodes results and logs from the ABI, returned as the same plain records.
Who signs (``signing``): ``node`` (the default), senders are accounts the node holds
unlocked (``eth_sendTransaction``); on a development node :meth:`RpcBackend.unlock` adds
and unlocks any address (``evm_addAccount`` and ``personal_unlockAccount``, which
ganache 7 and the dev chain answer). ``local``: this process signs each transaction with
the sender's own secp256k1 key (:meth:`RpcBackend.add_key`; eth-account, legacy EIP-155
with the chain's id and gas price, the nonce the larger of the node's ``pending`` count
and the last one used here) and sends it with ``eth_sendRawTransaction``, so no account
need be unlocked: what a real network's node does. ``fund`` sets a balance
(``evm_setAccountBalance``, development nodes). ``deploy`` and ``transact`` wait for the
receipt (on an instamining node each is mined in a block of its own); ``submit`` /
``submit_deploy`` send without waiting and ``receipt`` looks for it later (a node mining
at intervals); ``mine`` asks for a block (``evm_mine``). A reverted transaction's reason
comes from the receipt's ``revertReason`` when the node gives one, else from replaying
it with ``eth_call`` on the block before it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from eth_account import Account
from hexbytes import HexBytes
from web3 import Web3
from web3._utils.events import get_event_data
from web3.exceptions import (
    ContractLogicError,
    TransactionNotFound,
    Web3Exception,
    Web3RPCError,
)

from fedledger.contracts.backend import ChainError, ContractSource, LogRecord, Receipt
from fedledger.contracts.devchain import revert_reason
from fedledger.contracts.eth import EthKey, checksum, keccak256

DEFAULT_GAS = 12_000_000
#: who signs transactions: the node (unlocked accounts) or this process (raw transactions)
SIGNING = ("node", "local")


@lru_cache(maxsize=8)
def compile_source(
    name: str, text: str, evm_version: str | None = None
) -> tuple[tuple[dict[str, Any], ...], bytes]:
    """The ABI and deployment bytecode of a Vyper source (compiled once per process), for
    ``evm_version`` (e.g. ``shanghai`` for ganache 7, which lacks Cancun's MCOPY) or the
    compiler's default."""
    import vyper
    from vyper.compiler.settings import Settings

    settings = Settings(evm_version=evm_version) if evm_version else None
    out = vyper.compile_code(text, output_formats=["abi", "bytecode"], contract_path=name,
                             settings=settings)
    return tuple(out["abi"]), bytes.fromhex(out["bytecode"].removeprefix("0x"))


def _source_key(name: str, text: str, evm_version: str | None) -> tuple[str, str, str]:
    return (name, hashlib.sha256(text.encode()).hexdigest(), evm_version or "")


def plain(value: Any) -> Any:
    """web3's decoded values as the in-process backend gives them: bytes, checksummed
    addresses, tuples for arrays, (field, value) tuples for structs."""
    if isinstance(value, HexBytes | bytearray):
        return bytes(value)
    if isinstance(value, Mapping):  # a struct (web3's AttributeDict)
        return tuple((k, plain(v)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return tuple(plain(v) for v in value)
    if isinstance(value, str) and value.startswith("0x") and len(value) == 42:
        return checksum(value)
    return value


def _event_topic(event: dict[str, Any]) -> bytes:
    types = ",".join(_abi_type(i) for i in event["inputs"])
    return keccak256(f"{event['name']}({types})".encode())


def _abi_type(item: dict[str, Any]) -> str:
    kind = str(item["type"])
    if kind.startswith("tuple"):
        return "(" + ",".join(_abi_type(c) for c in item["components"]) + ")" + kind[5:]
    return kind


@dataclass(frozen=True)
class Pending:
    """A sent transaction: what is needed to build its receipt once it is mined.
    ``refused``: the node refused it at submission (a revert reason), no hash."""

    fn: str
    tx: dict[str, Any]
    source: ContractSource
    address: str
    tx_hash: str
    refused: str | None = None


class RpcBackend:
    """A chain reached over JSON-RPC at ``url``; contracts known by address."""

    def __init__(
        self, url: str, timeout: float = 30.0, gas: int = DEFAULT_GAS,
        evm_version: str | None = None, signing: str = "node", keys: tuple[EthKey, ...] = (),
    ) -> None:
        if signing not in SIGNING:
            raise ValueError(f"signing {signing!r}: allowed are {', '.join(SIGNING)}")
        self.signing = signing
        self._keys = {k.address: k for k in keys}
        self._nonces: dict[str, int] = {}  # sender -> next nonce (local signing)
        self.url = url
        self.evm_version = evm_version
        self.w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": timeout}))
        self.timeout = timeout
        self.gas = gas
        self._sources: dict[str, ContractSource] = {}
        self._compiled: dict[tuple[str, str, str], tuple[tuple[dict[str, Any], ...], bytes]] = {}
        self._unlocked: set[str] = set()
        self._default: ContractSource | None = None
        try:
            self._chain_id = int(self.w3.eth.chain_id)
        except (OSError, Web3Exception) as exc:
            raise ChainError(f"no Ethereum JSON-RPC node answers at {url}: {exc}") from exc

    # ------------------------------------------------------------ chain facts

    @property
    def chain_id(self) -> int:
        return self._chain_id

    @property
    def block_number(self) -> int:
        return int(self.w3.eth.block_number)

    @property
    def timestamp(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def _rpc(self, method: str, params: list[Any]) -> Any:
        reply = self.w3.provider.make_request(method, params)  # type: ignore[arg-type]
        if "error" in reply:
            raise ChainError(f"{method} failed at {self.url}: {reply['error']}")
        return reply.get("result")

    def fund(self, address: str, wei: int) -> None:
        self._rpc("evm_setAccountBalance", [checksum(address), hex(wei)])

    def balance(self, address: str) -> int:
        return int(self.w3.eth.get_balance(checksum(address)))

    def add_key(self, key: EthKey) -> None:
        """Sign ``key.address``'s transactions here (``signing`` = ``local``)."""
        self._keys[key.address] = key

    def unlock(self, address: str) -> None:
        """Let this node send from ``address`` without its key (development nodes)."""
        address = checksum(address)
        if address in self._unlocked:
            return
        known = {checksum(a) for a in self._rpc("eth_accounts", [])}
        if address not in known:
            self.w3.provider.make_request("evm_addAccount", [address, ""])  # type: ignore[arg-type]
            self._rpc("personal_unlockAccount", [address, "", 0])
        self._unlocked.add(address)

    # ------------------------------------------------------------ contracts

    def register(self, address: str, source: ContractSource) -> None:
        """Decode calls and logs of ``address`` with ``source``'s ABI."""
        self._sources[checksum(address)] = source

    def use_source(self, source: ContractSource) -> None:
        """Decode logs of addresses not registered with ``source``'s ABI (one contract
        kind per chain: what a subscriber that did not deploy it knows)."""
        self._default = source

    def compiled(self, source: ContractSource) -> tuple[tuple[dict[str, Any], ...], bytes]:
        """``source``'s ABI and bytecode: preloaded, or compiled here."""
        text = source.text()
        found = self._compiled.get(_source_key(source.name, text, self.evm_version))
        return found or compile_source(source.name, text, self.evm_version)

    def preload(self, source: ContractSource, abi: list[dict[str, Any]], bytecode: bytes,
                source_sha256: str) -> bool:
        """Use a compilation made elsewhere (the launcher's) for ``source`` when it was
        made from the same text (``source_sha256``) for this EVM version; whether used."""
        text = source.text()
        if hashlib.sha256(text.encode()).hexdigest() != source_sha256:
            return False
        self._compiled[_source_key(source.name, text, self.evm_version)] = (tuple(abi), bytecode)
        return True

    def _source(self, address: str) -> ContractSource:
        found = self._sources.get(checksum(address)) or self._default
        if found is None:
            known = ", ".join(self._sources) or "(none)"
            raise ChainError(f"no contract known at {address}; known: {known}")
        return found

    def _contract(self, address: str) -> Any:
        source = self._source(address)
        abi, _ = self.compiled(source)
        return self.w3.eth.contract(address=checksum(address), abi=list(abi))

    def _events(self, source: ContractSource) -> dict[bytes, dict[str, Any]]:
        abi, _ = self.compiled(source)
        return {_event_topic(e): e for e in abi if e.get("type") == "event"}

    def _decode_log(self, raw: Any, source: ContractSource | None = None) -> LogRecord | None:
        try:
            src = source or self._source(raw["address"])
        except ChainError:
            return None
        topics = raw["topics"]
        event = self._events(src).get(bytes(HexBytes(topics[0]))) if topics else None
        if event is None:
            return None
        data = get_event_data(self.w3.codec, event, raw)  # type: ignore[arg-type]
        args = tuple((i["name"], plain(data["args"][i["name"]])) for i in event["inputs"])
        return LogRecord(
            address=checksum(raw["address"]), event=event["name"], args=args,
            block=int(raw["blockNumber"]), tx_index=int(raw["transactionIndex"]),
        )

    def _submit(self, fn: str, tx: dict[str, Any], source: ContractSource,
                 address: str) -> Pending:
        try:
            tx_hash = self._send(tx)
        except (ContractLogicError, Web3RPCError) as exc:  # a node refusing reverting txs
            return Pending(fn, tx, source, address, "", _reason_of(exc))
        except (OSError, Web3Exception) as exc:
            raise ChainError(f"transaction from {tx['from']} failed at {self.url}: {exc}") \
                from exc
        return Pending(fn, tx, source, address, "0x" + bytes(tx_hash).hex())

    def _send(self, tx: dict[str, Any]) -> bytes:
        """Send ``tx`` (from, to, data, value) as the node's or as a locally signed one."""
        if self.signing == "node":
            self.unlock(tx["from"])
            return bytes(self.w3.eth.send_transaction({**tx, "gas": self.gas}))  # type: ignore
        sender = tx["from"]
        key = self._keys.get(sender)
        if key is None:
            held = ", ".join(sorted(self._keys)) or "none"
            raise ChainError(f"signing is local and no secp256k1 key of sender {sender} is "
                             f"held here (held: {held})")
        nonce = max(self._nonces.get(sender, 0),
                    int(self.w3.eth.get_transaction_count(sender, "pending")))  # type: ignore
        body = {"nonce": nonce, "gas": self.gas, "gasPrice": int(self.w3.eth.gas_price),
                "value": int(tx.get("value", 0)), "data": tx["data"],
                "chainId": self._chain_id}
        if tx.get("to"):
            body["to"] = tx["to"]
        signed = Account.sign_transaction(body, key.secret)
        tx_hash = bytes(self.w3.eth.send_raw_transaction(signed.raw_transaction))
        self._nonces[sender] = nonce + 1
        return tx_hash

    def receipt(self, pending: Pending) -> Receipt | None:
        """The receipt of a submitted transaction, or None while it waits for a block."""
        if pending.refused is not None:
            return self._receipt(pending, {"error": pending.refused})
        try:
            raw = self.w3.eth.get_transaction_receipt(pending.tx_hash)  # type: ignore
        except TransactionNotFound:
            return None
        return self._receipt(pending, raw)

    def wait(self, pending: Pending) -> Receipt:
        """The receipt of a submitted transaction once it is mined (``timeout`` s)."""
        if pending.refused is None:
            try:
                self.w3.eth.wait_for_transaction_receipt(
                    pending.tx_hash, timeout=self.timeout, poll_latency=0.05  # type: ignore
                )
            except (OSError, Web3Exception) as exc:
                raise ChainError(f"{pending.fn} was not mined at {self.url}: {exc}") from exc
        found = self.receipt(pending)
        assert found is not None
        return found

    def _receipt(self, pending: Pending, raw: Any) -> Receipt:
        fn, tx, source, address = pending.fn, pending.tx, pending.source, pending.address
        if "error" in raw:  # refused at submission
            return Receipt(fn=fn, status=False, gas_used=0, logs=(), block=self.block_number,
                           tx_index=0, error=raw["error"], contract_address=address)
        ok = bool(raw["status"])
        created = raw.get("contractAddress")
        if created:
            address = checksum(created)
            self.register(address, source)
        logs = tuple(
            rec for rec in (self._decode_log(log, source) for log in raw["logs"]) if rec
        ) if ok else ()
        error = "" if ok else self._revert_reason(raw, tx)
        return Receipt(
            fn=fn, status=ok, gas_used=int(raw["gasUsed"]), logs=logs,
            block=int(raw["blockNumber"]), tx_index=int(raw["transactionIndex"]),
            error=error, contract_address=address,
        )

    def _revert_reason(self, raw: Any, tx: dict[str, Any]) -> str:
        given = raw.get("revertReason")
        if given is not None:
            return str(given) or "reverted"
        call = {k: (hex(v) if isinstance(v, int) else v) for k, v in tx.items()
                if k in ("from", "to", "data", "value")}
        block = hex(int(raw["blockNumber"]) - 1)
        reply = self.w3.provider.make_request("eth_call", [call, block])  # type: ignore[arg-type]
        return _error_reason(reply.get("error")) or "reverted"

    def deploy(
        self, source: ContractSource, sender: str, args: tuple[Any, ...] = (), value: int = 0
    ) -> Receipt:
        return self.wait(self.submit_deploy(source, sender, args, value))

    def transact(
        self, sender: str, address: str, fn: str, args: tuple[Any, ...] = (), value: int = 0
    ) -> Receipt:
        return self.wait(self.submit(sender, address, fn, args, value))

    def submit_deploy(
        self, source: ContractSource, sender: str, args: tuple[Any, ...] = (), value: int = 0
    ) -> Pending:
        """Send a deployment without waiting for its block (``receipt`` / ``wait``)."""
        abi, bytecode = self.compiled(source)
        factory = self.w3.eth.contract(abi=list(abi), bytecode=bytecode)
        data = factory.constructor(*args)._encode_data_in_transaction()
        tx = {"from": checksum(sender), "data": data, "value": value}
        return self._submit("__init__", tx, source, "")

    def submit(
        self, sender: str, address: str, fn: str, args: tuple[Any, ...] = (), value: int = 0
    ) -> Pending:
        """Send ``fn(*args)`` without waiting for its block (``receipt`` / ``wait``)."""
        contract = self._contract(address)
        try:
            contract.get_function_by_name(fn)
        except ValueError:
            raise ChainError(f"contract at {address} has no function {fn!r}") from None
        try:
            data = contract.encode_abi(fn, args=list(args))
        except (TypeError, ValueError, Web3Exception) as exc:
            raise ChainError(f"{fn}{args!r} does not fit the contract's ABI: {exc}") from exc
        tx = {"from": checksum(sender), "to": checksum(address), "data": data, "value": value}
        return self._submit(fn, tx, self._source(address), checksum(address))

    def call(self, address: str, fn: str, args: tuple[Any, ...] = ()) -> Any:
        contract = self._contract(address)
        try:
            function = contract.get_function_by_name(fn)
        except ValueError:
            raise ChainError(f"contract at {address} has no function {fn!r}") from None
        try:
            return plain(function(*args).call())
        except (ContractLogicError, Web3RPCError) as exc:
            raise ChainError(f"{fn} reverted: {_reason_of(exc)}") from exc

    def logs(
        self, address: str, from_block: int = 0, to_block: int | None = None
    ) -> list[LogRecord]:
        flt = {"address": checksum(address), "fromBlock": from_block,
               "toBlock": "latest" if to_block is None else to_block}
        raws = self.w3.eth.get_logs(flt)  # type: ignore[arg-type]
        return [rec for rec in (self._decode_log(r) for r in raws) if rec is not None]

    def all_logs(self, from_block: int, to_block: int) -> list[LogRecord]:
        """Every decodable log of blocks ``from_block..to_block``, any address."""
        raws = self.w3.eth.get_logs({"fromBlock": from_block, "toBlock": to_block})
        return [rec for rec in (self._decode_log(r) for r in raws) if rec is not None]

    def transaction_input(self, block: int, tx_index: int) -> tuple[str, str, bytes]:
        """(from, to, input) of the transaction at ``tx_index`` of ``block``."""
        b = self.w3.eth.get_block(block)
        tx = self.w3.eth.get_transaction(b["transactions"][tx_index])
        return checksum(tx["from"]), checksum(tx["to"] or "0x" + "00" * 20), bytes(tx["input"])

    def mine(self, timestamp: int | None = None) -> int:
        self._rpc("evm_mine", [] if timestamp is None else [timestamp])
        return self.block_number


def _error_reason(error: Any) -> str:
    """The revert reason in a JSON-RPC error object (its ``data``, else its message)."""
    if not isinstance(error, dict):
        return ""
    data = error.get("data")
    if isinstance(data, dict):  # some nodes nest it: {"data": {"data": "0x..."}}
        data = data.get("data") or data.get("result")
    if isinstance(data, str) and data.startswith("0x"):
        reason = revert_reason(bytes.fromhex(data[2:]))
        if reason:
            return reason
    text = str(error.get("message", ""))
    for prefix in ("execution reverted: ", "VM Exception while processing transaction: revert "):
        if text.startswith(prefix):
            return text[len(prefix):]
    return text


def _reason_of(exc: Exception) -> str:
    """The revert reason web3 raised with (ContractLogicError or an RPC error)."""
    response = getattr(exc, "rpc_response", None)
    if isinstance(response, dict) and "error" in response:
        return _error_reason(response["error"])
    data = getattr(exc, "data", None)
    return _error_reason({"data": data, "message": str(getattr(exc, "message", exc))})


__all__ = ["SIGNING", "RpcBackend", "compile_source", "plain"]
