"""The simulator's one copy per blob (runtime.sim.blobshare) and the shared decode of
model blobs (protocols.kit.blobs): same content id, same bytes object and same read-only
weights for every node; real nodes' plain bytes decode as before."""

from __future__ import annotations

import numpy as np
import pytest

from fedledger.protocols.base import BlobReceived, EmitMetric, FetchBlob, ProtocolNode, Start
from fedledger.protocols.kit.blobs import BAD_HASH, ModelBlobs
from fedledger.protocols.kit.gate import Reject
from fedledger.runtime.sim import ComputeModel, LinkSpec, NetworkModel, Simulator
from fedledger.runtime.sim.blobshare import BlobShare, SharedBlob
from fedledger.storage.blobs import BlobStore
from test_sim import FakeJobs, Recorder, setup

SHAPE = (1000,)


def _model(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(SHAPE).astype(np.float32)


def test_same_cid_gives_one_shared_object_from_any_store(tmp_path):
    a, b = BlobStore(tmp_path / "a"), BlobStore(tmp_path / "b")
    cid = a.put(b"x" * 1000)
    assert b.put(b"x" * 1000) == cid
    share = BlobShare()
    first = share.read(a, cid)
    second = share.read(b, cid)
    assert isinstance(first, SharedBlob) and first == b"x" * 1000
    assert second is first
    assert (share.reads, share.hits, len(share), share.size) == (1, 1, 1, 1000)


def test_absent_or_malformed_blobs_read_as_none(tmp_path):
    a, empty = BlobStore(tmp_path / "a"), BlobStore(tmp_path / "e")
    cid = a.put(b"y" * 10)
    share = BlobShare()
    assert share.read(a, cid) is not None
    assert share.read(empty, cid) is None  # kept, but this source does not hold it
    assert share.read(None, cid) is None
    assert share.read(a, "not-a-cid") is None
    assert share.read(a, "bafkreimissing") is None


def test_capacity_evicts_least_recently_used(tmp_path):
    store = BlobStore(tmp_path / "s")
    cids = [store.put(bytes([i]) * 100) for i in range(3)]
    share = BlobShare(capacity=250)
    one = share.read(store, cids[0])
    share.read(store, cids[1])
    share.read(store, cids[0])  # most recent now
    share.read(store, cids[2])  # evicts cids[1]
    assert share.size == 200 and len(share) == 2
    assert share.read(store, cids[0]) is one
    reads = share.reads
    again = share.read(store, cids[1])
    assert share.reads == reads + 1 and again == bytes([1]) * 100
    assert BlobShare(capacity=50).read(store, cids[0]) == bytes([0]) * 100  # too big: not kept
    with pytest.raises(ValueError, match="capacity -1"):
        BlobShare(capacity=-1)


def test_shared_blob_decodes_once_for_all_nodes_read_only(tmp_path):
    node_a = ModelBlobs(BlobStore(tmp_path / "a"), SHAPE)
    node_b = ModelBlobs(BlobStore(tmp_path / "b"), SHAPE)
    weights = _model(1)
    ref = node_a.store(weights, 10)
    data = node_a.store_.get(ref.cid)
    shared = SharedBlob(data)
    wa, wb = node_a.check(shared, ref), node_b.check(shared, ref)
    assert wa is wb
    assert np.array_equal(wa, weights)
    assert not wa.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        wa += 1.0
    own = node_b.check(shared, ref).copy()  # copy before changing: the shared one stays
    own += 1.0
    assert np.array_equal(node_a.check(shared, ref), weights)
    # plain bytes (a real node's fetch): a private, writable decode, bit-identical
    pa, pb = node_a.check(data, ref), node_b.check(data, ref)
    assert pa is not pb and pa.flags.writeable
    assert pa.tobytes() == wa.tobytes() == pb.tobytes()


def test_shared_blob_is_still_hashed_per_check(tmp_path):
    node = ModelBlobs(BlobStore(tmp_path / "a"), SHAPE)
    ref = node.store(_model(2), 10)
    other = node.store(_model(3), 10)
    shared = SharedBlob(node.store_.get(ref.cid))
    node.check(shared, ref)
    with pytest.raises(Reject) as err:
        node.check(shared, other)  # the memo does not bypass the hash check
    assert err.value.reason == BAD_HASH


class _Xor:
    def encrypt(self, data: bytes) -> bytes:
        return bytes(x ^ 0x5A for x in data)

    decrypt = encrypt


def test_encrypted_models_are_not_shared(tmp_path):
    node = ModelBlobs(BlobStore(tmp_path / "a"), SHAPE, cipher=_Xor())
    weights = _model(4)
    ref = node.store(weights, 10)
    shared = SharedBlob(node.store_.get(ref.cid))
    first, second = node.check(shared, ref), node.check(shared, ref)
    assert first is not second and first.flags.writeable
    assert np.array_equal(first, weights) and not shared.shared_memo


def test_simulated_fetches_of_one_blob_share_bytes_and_weights(tmp_path):
    shape_blobs = ModelBlobs(BlobStore(tmp_path / "src"), SHAPE)
    ref = shape_blobs.store(_model(5), 10)
    got: dict[str, object] = {}

    class Fetcher(ProtocolNode):
        def handle(self, event):
            if isinstance(event, Start) and self.node_id != "src":
                return [FetchBlob(ref.cid, "src")]
            if isinstance(event, BlobReceived):
                got[self.node_id] = (event.data, shape_blobs.check(event.data, ref))
                return [EmitMetric("got", 1.0, 0)]
            return []

    names = ("src", "n1", "n2", "n3")
    nodes = {n: Fetcher(setup(n, ())) for n in names}
    net = NetworkModel(LinkSpec(latency=0.01, bandwidth=1e7))
    blobs = {"src": shape_blobs.store_}
    sim = Simulator(nodes, {}, FakeJobs(), net, ComputeModel(), Recorder(), blobs=blobs)
    stats = sim.run()
    datas = [got[n][0] for n in names[1:]]
    weights = [got[n][1] for n in names[1:]]
    assert all(d is datas[0] for d in datas) and all(w is weights[0] for w in weights)
    assert sim.blob_share.reads == 1 and sim.blob_share.hits == 2
    # each node still pays for its own answer on the network
    assert stats.bytes_sent["src"] == 3 * (64 + len(datas[0]))
