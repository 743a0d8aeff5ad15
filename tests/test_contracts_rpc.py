"""The JSON-RPC side of the contracts layer: the py-evm dev chain's methods, its HTTP
server, the web3 backend's logs, blocks and errors, and starting a local chain."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest

from fedledger.contracts import eth
from fedledger.contracts.backend import ChainError
from fedledger.contracts.devchain import DevChain, RpcFault
from fedledger.contracts.dflbcb import SOURCE, DflbcbContract, Genesis
from fedledger.contracts.localchain import EVM_VERSIONS, LocalChain, find_ganache, start_chain
from fedledger.contracts.rpc import RpcBackend, compile_source
from fedledger.contracts.rpcserver import answer

ETH = 10**18
INIT = eth.EthKey.from_seed(2, "init")
MEMBERS = [eth.EthKey.from_seed(2, f"m{i}") for i in range(4)]


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_the_dev_chain_mines_each_transaction_at_the_wall_clock():
    clock = Clock(1_800_000_000.0)
    chain = DevChain(chain_id=77, clock=clock)
    assert chain.handle("eth_chainId", []) == hex(77)
    chain.handle("evm_setAccountBalance", [INIT.address, hex(5 * ETH)])
    assert int(chain.handle("eth_getBalance", [INIT.address]), 16) == 5 * ETH
    _, code = compile_source(SOURCE.name, SOURCE.text())
    clock.t += 7.9
    deploy = chain.handle("eth_sendTransaction",
                          [{"from": INIT.address, "data": "0x" + code.hex()}])
    receipt = chain.handle("eth_getTransactionReceipt", [deploy])
    assert receipt["status"] == "0x1" and receipt["contractAddress"]
    block = chain.handle("eth_getBlockByNumber", ["latest", False])
    assert int(block["number"], 16) == 1 and int(block["timestamp"], 16) == 1_800_000_007
    assert block["transactions"] == [deploy]
    clock.t -= 100  # a clock stepping back never makes a block older than its parent
    chain.handle("evm_mine", [])
    assert int(chain.handle("eth_getBlockByNumber", ["latest", False])["timestamp"], 16) == (
        1_800_000_007)
    chain.handle("evm_mine", [{"timestamp": 1_900_000_000}])
    assert int(chain.handle("eth_blockNumber", []), 16) == 3
    with pytest.raises(RpcFault, match="invalid raw transaction"):
        chain.handle("eth_sendRawTransaction", ["0x00"])
    with pytest.raises(RpcFault, match="block 9 not found"):
        chain.handle("eth_getBlockByNumber", [hex(9), False])


def test_a_reverted_transaction_is_mined_with_its_reason():
    chain = DevChain()
    abi, code = compile_source(SOURCE.name, SOURCE.text())
    deploy = chain.handle("eth_sendTransaction",
                          [{"from": INIT.address, "data": "0x" + code.hex()}])
    address = chain.handle("eth_getTransactionReceipt", [deploy])["contractAddress"]
    from web3 import Web3

    c = Web3().eth.contract(abi=list(abi))
    g = Genesis(committee=(INIT.address,), model_hash=b"\x01" * 32)
    data = c.encode_abi("initialize", args=[[INIT.address], g.model_hash, g.params.as_tuple(),
                                            list(g.curve_x), list(g.curve_y)])
    tx = {"from": INIT.address, "to": address, "data": data}
    with pytest.raises(RpcFault, match="committee needs at least 4 members") as fault:
        chain.handle("eth_call", [tx])
    assert fault.value.code == 3 and fault.value.data.startswith("0x08c379a0")
    sent = chain.handle("eth_sendTransaction", [tx])
    receipt = chain.handle("eth_getTransactionReceipt", [sent])
    assert receipt["status"] == "0x0" and receipt["logs"] == []
    assert receipt["revertReason"] == "committee needs at least 4 members"
    # JSON-RPC framing: errors carry code, message and data; bad requests are answered
    reply = answer(chain, {"jsonrpc": "2.0", "id": 4, "method": "eth_call", "params": [tx]})
    assert reply["id"] == 4 and reply["error"]["code"] == 3 and "data" in reply["error"]
    assert answer(chain, {"id": 5})["error"]["code"] == -32600
    assert answer(chain, {"id": 6, "method": "eth_getBalance", "params": []})["error"][
        "code"] == -32602


@pytest.fixture(scope="module")
def devchain() -> Iterator[LocalChain]:
    with start_chain("devchain", chain_id=1337, accounts=((INIT.address, 50 * ETH),)) as node:
        yield node


def test_the_server_answers_batches_and_funds_genesis_accounts(devchain: LocalChain):
    body = json.dumps([{"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
                       {"jsonrpc": "2.0", "id": 2, "method": "nope", "params": []}])
    req = urllib.request.Request(devchain.url, body.encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as reply:
        first, second = json.loads(reply.read())
    assert first == {"jsonrpc": "2.0", "id": 1, "result": hex(1337)}
    assert second["error"]["code"] == -32601
    assert RpcBackend(devchain.url).balance(INIT.address) == 50 * ETH


def test_the_rpc_backend_reads_logs_blocks_and_inputs(devchain: LocalChain):
    chain = RpcBackend(devchain.url)
    c = DflbcbContract.deploy(chain, INIT.address)
    g = Genesis(committee=tuple(k.address for k in MEMBERS), model_hash=b"\x02" * 32)
    r = c.initialize(INIT.address, g)
    assert r.status and [log.event for log in r.logs] == ["Initialized"]
    logs = chain.logs(c.address, from_block=r.block)
    assert [(log.event, log.block) for log in logs] == [("Initialized", r.block)]
    assert logs[0].arg("committee") == tuple(k.address for k in MEMBERS)
    assert dict(logs[0].arg("params"))["elect_times"] == g.params.elect_times
    assert chain.logs(c.address, from_block=r.block + 1) == []
    sender, to, data = chain.transaction_input(r.block, r.tx_index)
    assert (sender, to) == (INIT.address, c.address) and len(data) > 4
    # a subscriber that did not deploy decodes the contract's logs from the source
    other = RpcBackend(devchain.url)
    assert other.all_logs(r.block, r.block) == []  # the address is not known to it
    other.use_source(SOURCE)
    assert [log.event for log in other.all_logs(r.block, r.block)] == ["Initialized"]
    before = chain.timestamp
    assert chain.mine(before + 100) == r.block + 1 and chain.timestamp == before + 100
    with pytest.raises(ChainError, match="no function 'nope'"):
        chain.transact(INIT.address, c.address, "nope")
    with pytest.raises(ChainError, match="no contract known"):
        chain.transact(INIT.address, "0x" + "12" * 20, "register")
    with pytest.raises(ChainError, match="does not fit the contract's ABI"):
        chain.transact(INIT.address, c.address, "withdraw", ("lots",))


def test_a_chain_that_is_not_there_is_named():
    with pytest.raises(ChainError, match="no Ethereum JSON-RPC node answers"):
        RpcBackend("http://127.0.0.1:9", timeout=2)
    with pytest.raises(ChainError, match="chain kind 'geth'"):
        start_chain("geth")


def test_a_preloaded_compilation_is_used_only_for_the_same_source(devchain: LocalChain):
    chain = RpcBackend(devchain.url)
    import hashlib

    digest = hashlib.sha256(SOURCE.text().encode()).hexdigest()
    assert not chain.preload(SOURCE, [], b"\x00", "0" * 64)  # compiled from another text
    assert chain.preload(SOURCE, [{"type": "event", "name": "X", "inputs": []}], b"\x01",
                         digest)
    assert chain.compiled(SOURCE) == (({"type": "event", "name": "X", "inputs": []},), b"\x01")
    shanghai = RpcBackend(devchain.url, evm_version="shanghai")  # another EVM: compiled
    assert shanghai.compiled(SOURCE) == compile_source(SOURCE.name, SOURCE.text(), "shanghai")


def test_a_node_host_runs_chain_effects_over_rpc_and_gets_logs_in_order(tmp_path, devchain):
    """The real node host's chain (runtime.node.chain_rpc) without the rest of a node:
    effects in, receipts and polled logs out, on an asyncio loop with a network clock."""
    import asyncio
    from types import SimpleNamespace

    from fedledger.contracts.effects import (
        ContractCall,
        ContractDeploy,
        ContractLog,
        ContractReceipt,
        ContractSpec,
    )
    from fedledger.protocols.resources import NodeResources
    from fedledger.runtime.effects import EffectTable
    from fedledger.runtime.node.chain_rpc import RpcChainHost, chain_file

    seen: list[object] = []
    spec = ContractSpec(SOURCE)
    host = SimpleNamespace(resources=NodeResources(contract=spec),
                           options=SimpleNamespace(data_dir=tmp_path),
                           effects=EffectTable("test host"), _dispatch=seen.append,
                           _now=lambda: 1.5)
    with pytest.raises(ChainError, match="names no chain"):
        RpcChainHost.for_node(host)
    chain_file(tmp_path).parent.mkdir()
    chain_file(tmp_path).write_text(json.dumps({"url": devchain.url, "evm_version": None}))
    chain = RpcChainHost.for_node(host)
    assert chain is not None
    g = Genesis(committee=tuple(k.address for k in MEMBERS), model_hash=b"\x03" * 32)

    async def drive() -> None:
        chain.start(asyncio.get_running_loop())
        host.effects.execute("n0", ContractDeploy("deploy", INIT.address))
        while not any(isinstance(e, ContractReceipt) for e in seen):
            await asyncio.sleep(0.05)
        address = next(e for e in seen if isinstance(e, ContractReceipt)).address
        args = ([k.address for k in MEMBERS], g.model_hash, g.params.as_tuple(),
                list(g.curve_x), list(g.curve_y))
        host.effects.execute("n0", ContractCall("init", address, "initialize", args,
                                                INIT.address))
        host.effects.execute("n0", ContractCall("bad", address, "nope", (), INIT.address))
        while not any(isinstance(e, ContractLog) and e.log.address == address
                      for e in seen) or len(
                [e for e in seen if isinstance(e, ContractReceipt)]) < 3:
            await asyncio.sleep(0.05)
        chain.close()

    asyncio.run(asyncio.wait_for(drive(), 60))
    receipts = [e for e in seen if isinstance(e, ContractReceipt)]
    assert [(r.call_id, r.status, r.time) for r in receipts] == [
        ("deploy", True, 1.5), ("init", True, 1.5), ("bad", False, 1.5)]
    assert "no function 'nope'" in receipts[2].error
    # the poller starts at block 0: the module's earlier contracts' logs come too
    logs = [e for e in seen if isinstance(e, ContractLog) and e.log.address == receipts[0].address]
    assert [e.log.event for e in logs] == ["Initialized"]
    assert seen.index(receipts[1]) < seen.index(logs[0])  # the receipt before its logs


def test_a_dev_chain_with_block_times_pools_transactions_for_the_next_block():
    with pytest.raises(ValueError, match="block_mode"):
        DevChain(block_time=1.0, block_mode="poisson")
    assert DevChain(block_time=13.0).next_gap() == 13.0
    gaps = [DevChain(block_time=13.0, block_mode="exponential", seed=s).next_gap()
            for s in range(2000)]
    assert min(gaps) > 0 and abs(sum(gaps) / len(gaps) - 13.0) < 1.0  # std error 0.29
    # a server mining every hour: nothing is mined until evm_mine closes the block
    with start_chain("devchain", accounts=((INIT.address, ETH),), block_time=3600.0) as node:
        chain = RpcBackend(node.url)
        first = chain.submit_deploy(SOURCE, INIT.address)
        second = chain.submit_deploy(SOURCE, INIT.address)
        assert chain.receipt(first) is None and chain.receipt(second) is None
        head = chain.mine()
        a, b = chain.wait(first), chain.wait(second)
        assert (a.block, a.tx_index, b.block, b.tx_index) == (head, 0, head, 1)
        assert a.status and b.status and a.contract_address != b.contract_address
    with pytest.raises(ChainError, match="fixed intervals only"):
        start_chain("ganache", block_time=13.0, block_mode="exponential")


def test_a_node_host_on_a_chain_mining_at_intervals_is_never_held_up(tmp_path):
    """With blocks at intervals the host sends without waiting: nothing comes back until
    the block is mined, then the receipts of both calls and the logs, in that order."""
    import asyncio
    from types import SimpleNamespace

    from fedledger.contracts.effects import ContractDeploy, ContractLog, ContractReceipt
    from fedledger.contracts.effects import ContractSpec as Spec
    from fedledger.protocols.resources import NodeResources
    from fedledger.runtime.effects import EffectTable
    from fedledger.runtime.node.chain_rpc import RpcChainHost, chain_file

    seen: list[object] = []
    host = SimpleNamespace(resources=NodeResources(contract=Spec(SOURCE, block_time=3600.0)),
                           options=SimpleNamespace(data_dir=tmp_path),
                           effects=EffectTable("test host"), _dispatch=seen.append,
                           _now=lambda: 2.0)
    with start_chain("devchain", accounts=((INIT.address, ETH),), block_time=3600.0) as node:
        chain_file(tmp_path).parent.mkdir()
        chain_file(tmp_path).write_text(json.dumps({"url": node.url}))
        chain = RpcChainHost.for_node(host)
        assert chain is not None

        async def drive() -> None:
            chain.start(asyncio.get_running_loop())
            host.effects.execute("n0", ContractDeploy("a", INIT.address))
            host.effects.execute("n0", ContractDeploy("b", INIT.address))
            while chain.waiting < 2:  # both sent (the worker compiles the source first)
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # five polls: the chain mines once an hour
            assert (seen, chain.waiting) == ([], 2)
            await asyncio.get_running_loop().run_in_executor(None, RpcBackend(node.url).mine)
            while len(seen) < 2:
                await asyncio.sleep(0.05)
            chain.close()

        asyncio.run(asyncio.wait_for(drive(), 60))
    receipts = [e for e in seen if isinstance(e, ContractReceipt)]
    assert [(r.call_id, r.status, r.block) for r in receipts] == [
        ("a", True, receipts[0].block), ("b", True, receipts[0].block)]
    assert not [e for e in seen if isinstance(e, ContractLog)]  # the contract logs nothing


# ------------------------------------------------------------------ local signing


def _raw(key: eth.EthKey, nonce: int, data: bytes, chain_id: int = 1337, to: str = "") -> str:
    from eth_account import Account

    body = {"nonce": nonce, "gas": 5_000_000, "gasPrice": 0, "value": 0,
            "data": "0x" + data.hex(), "chainId": chain_id, **({"to": to} if to else {})}
    return "0x" + bytes(Account.sign_transaction(body, key.secret).raw_transaction).hex()


def test_the_dev_chain_takes_signed_transactions_and_checks_chain_id_and_nonce():
    chain = DevChain(chain_id=1337)
    key = eth.EthKey.from_seed(2, "raw-signer")
    _, code = compile_source(SOURCE.name, SOURCE.text())
    raw = _raw(key, 0, code)
    sent = chain.handle("eth_sendRawTransaction", [raw])
    assert sent == "0x" + eth.keccak256(bytes.fromhex(raw[2:])).hex()  # a real tx hash
    receipt = chain.handle("eth_getTransactionReceipt", [sent])
    assert receipt["status"] == "0x1" and receipt["from"] == key.address  # recovered
    assert chain.handle("eth_getTransactionCount", [key.address, "pending"]) == "0x1"
    with pytest.raises(RpcFault, match=r"nonce 0 of .*: expected 1"):
        chain.handle("eth_sendRawTransaction", [raw])  # replayed
    with pytest.raises(RpcFault, match="chain id 5; this chain's id is 1337"):
        chain.handle("eth_sendRawTransaction", [_raw(key, 1, code, chain_id=5)])
    tampered = raw[:-4] + ("00" if raw[-4:-2] != "00" else "01") + raw[-2:]
    try:  # a changed signature recovers another address (or none): never the key's
        other = chain.handle("eth_sendRawTransaction", [tampered])
        assert chain.handle("eth_getTransactionReceipt", [other])["from"] != key.address
    except RpcFault as fault:
        assert "invalid raw transaction" in str(fault)
    # a pooling chain counts a sent, unmined transaction only as pending
    pool = DevChain(chain_id=1337, block_time=5.0)
    pool.handle("eth_sendRawTransaction", [raw])
    assert pool.handle("eth_getTransactionCount", [key.address, "pending"]) == "0x1"
    assert pool.handle("eth_getTransactionCount", [key.address, "latest"]) == "0x0"
    pool.mine_pending()
    assert pool.handle("eth_getTransactionCount", [key.address, "latest"]) == "0x1"


@pytest.fixture(
    scope="module",
    params=["devchain", pytest.param("ganache", marks=[
        pytest.mark.slow,
        pytest.mark.skipif(find_ganache() is None, reason="ganache not installed: `npm "
                           "install --prefix .npm-tools ganache@7` in the checkout"),
    ])],
)
def any_chain(request: pytest.FixtureRequest) -> Iterator[LocalChain]:
    with start_chain(request.param, chain_id=1337) as node:
        yield node


def test_local_signing_sends_raw_transactions_no_account_unlocked(any_chain: LocalChain):
    init = eth.EthKey.from_seed(3, "local-init")
    members = [eth.EthKey.from_seed(3, f"local-m{i}") for i in range(4)]
    chain = RpcBackend(any_chain.url, evm_version=EVM_VERSIONS[any_chain.kind],
                       signing="local", keys=(init, *members[:3]))
    chain.add_key(members[3])
    for k in (init, *members):
        chain.fund(k.address, 100 * ETH)
    c = DflbcbContract.deploy(chain, init.address)
    refused = c.initialize(init.address, Genesis(committee=(init.address,),
                                                 model_hash=b"\x03" * 32))
    assert not refused.status and "committee needs at least 4 members" in refused.error
    g = Genesis(committee=tuple(k.address for k in members), model_hash=b"\x03" * 32)
    assert c.initialize(init.address, g).status
    # several in flight from one sender before any is mined: nonces counted here
    sent = [chain.submit(k.address, c.address, "register", (), value=ETH) for k in members]
    sent += [chain.submit(members[0].address, c.address, "deposit", (), value=ETH)]
    receipts = [chain.wait(p) for p in sent]
    assert all(r.status for r in receipts), [r.error for r in receipts]
    assert [log.event for r in receipts[:4] for log in r.logs] == ["Registered"] * 4
    accounts = {eth.checksum(a) for a in chain.w3.eth.accounts}
    assert not accounts & {init.address, *(k.address for k in members)}  # none unlocked
    for r in receipts:  # the chain recorded each as sent by the key's own address
        sender, _, _ = chain.transaction_input(r.block, r.tx_index)
        assert sender in {k.address for k in members}
    stranger = eth.EthKey.from_seed(3, "no-key-here")
    with pytest.raises(ChainError, match=f"no secp256k1 key of sender {stranger.address}"):
        chain.transact(stranger.address, c.address, "register", value=ETH)


def test_signing_is_node_or_local():
    with pytest.raises(ValueError, match="signing 'remote': allowed are node, local"):
        RpcBackend("http://127.0.0.1:1", signing="remote")


def test_a_node_host_signs_with_its_own_key_when_the_chain_file_says_local(tmp_path):
    """chain.json's ``signing: local``: the node host signs with NodeServices.extra.eth
    (a real network's registered key) and refuses a sender it holds no key of."""
    import asyncio
    from types import SimpleNamespace

    from fedledger.contracts.effects import (
        ContractCall,
        ContractDeploy,
        ContractReceipt,
        ContractSpec,
    )
    from fedledger.protocols.resources import NodeExtraKeys, NodeResources
    from fedledger.runtime.effects import EffectTable
    from fedledger.runtime.node.chain_rpc import RpcChainHost, RunChain, chain_file

    own = eth.EthKey.from_seed(4, "registered")
    seen: list[object] = []
    spec = ContractSpec(SOURCE, accounts=((own.address, 10 * ETH),))

    def host(extra: NodeExtraKeys) -> SimpleNamespace:
        return SimpleNamespace(resources=NodeResources(contract=spec),
                               options=SimpleNamespace(data_dir=tmp_path),
                               services=SimpleNamespace(extra=extra),
                               effects=EffectTable("test host"), _dispatch=seen.append,
                               _now=lambda: 2.0)

    with pytest.raises(ChainError, match="signing 'remote'"):
        RunChain(spec, tmp_path, signing="remote")
    run = RunChain(spec, tmp_path, signing="local")
    run.start()
    try:
        assert json.loads(chain_file(tmp_path).read_text())["signing"] == "local"
        with pytest.raises(ChainError, match="holds no secp256k1 key"):
            RpcChainHost.for_node(host(NodeExtraKeys()))
        node = host(NodeExtraKeys(eth=own))
        chain = RpcChainHost.for_node(node)
        assert chain is not None

        async def drive() -> None:
            chain.start(asyncio.get_running_loop())
            node.effects.execute("n0", ContractDeploy("deploy", own.address))
            node.effects.execute("n0", ContractCall("other", own.address, "register", (),
                                                    INIT.address))
            while len([e for e in seen if isinstance(e, ContractReceipt)]) < 2:
                await asyncio.sleep(0.05)
            chain.close()

        asyncio.run(asyncio.wait_for(drive(), 60))
        receipts = {e.call_id: e for e in seen if isinstance(e, ContractReceipt)}
        assert receipts["deploy"].status and receipts["deploy"].address
        assert not receipts["other"].status
        assert f"no secp256k1 key of sender {INIT.address}" in receipts["other"].error
        backend = run.backend()
        block = backend.w3.eth.get_block(receipts["deploy"].block)
        sent = backend.w3.eth.get_transaction(block["transactions"][0])
        assert eth.checksum(sent["from"]) == own.address  # recovered from its signature
    finally:
        run.stop()
