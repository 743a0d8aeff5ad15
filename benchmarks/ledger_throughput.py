"""Ledger throughput on one core: transactions, block appends, blob store.

1. Signed transactions created, verified and committed into blocks, per second, for
   Ed25519 and RSA-2048. Clients create and sign transactions (timed apart: it is their
   work, not the node's); the node verifies each one (``Verifier.check``: id and
   signature), packs them into blocks (Merkle root, proposer signature) and appends each
   block to a durable ``ChainStore`` (SQLite WAL, synchronous=FULL: one fsync per block).
   The node's rate is printed beside the raw signature-verification rate measured in the
   same process (``fedledger.crypto.verify_rate``): the ratio is the share of the node's
   time spent on the signature itself. Goal: >= 5,000 Ed25519 tx/s verified and committed.
2. Block append latency (median, p95) for empty blocks and full blocks.
3. Blob store write and read MB/s for a 1.7 MB blob (the μDFL paper's 431,080-parameter
   CNN as float32), plain and AES-GCM encrypted at rest; reads verify the hash.

    .venv/bin/python benchmarks/ledger_throughput.py [--seconds 4] [--block-size 500]
    .venv/bin/python benchmarks/ledger_throughput.py --quick   # Ed25519 only, small
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from fedledger.crypto import KeyPair, verify_rate
from fedledger.ledger.records import Block, Genesis, Member, Transaction, genesis_block, sign
from fedledger.ledger.store import ChainStore
from fedledger.ledger.verify import Verifier
from fedledger.storage import BlobStore

MODEL_BYTES = 431_080 * 4  # 1.72 MB


def make_keys(scheme: str, n: int) -> list[KeyPair]:
    if scheme == "ed25519":
        return [KeyPair.generate("ed25519", seed=bytes([i + 1]) * 32) for i in range(n)]
    return [KeyPair.generate("rsa") for _ in range(n)]


def tx_pipeline(scheme: str, seconds: float, block_size: int, workdir: Path) -> dict[str, float]:
    """Rates of creating, and of verifying + committing, signed transactions."""
    senders = make_keys(scheme, 8)
    proposer = senders[0]
    genesis = genesis_block(Genesis(tuple(Member.of(k) for k in senders), bytes(32)))
    verifier = Verifier(genesis.header.extra.directory())
    path = workdir / f"throughput-{scheme}.sqlite"
    created = committed = 0
    create_s = commit_s = 0.0
    with ChainStore(path) as store:
        store.append(genesis)
        head = genesis
        while create_s + commit_s < seconds:
            t0 = time.perf_counter()
            txs = tuple(
                sign(
                    Transaction(k.address, float(created + i), "note",
                                {"round": created + i}, created + i),
                    k,
                )
                for i, k in ((i, senders[i % len(senders)]) for i in range(block_size))
            )
            t1 = time.perf_counter()
            for tx in txs:
                verifier.check(tx)
            block = sign(
                Block.create(head.hash, head.height + 1, proposer.address, float(head.height),
                             txs),
                proposer,
            )
            store.append(block)
            t2 = time.perf_counter()
            head = block
            created += len(txs)
            committed += len(txs)
            create_s += t1 - t0
            commit_s += t2 - t1
    path.unlink()
    return {"created_per_s": created / create_s, "committed_per_s": committed / commit_s,
            "end_to_end_per_s": committed / (create_s + commit_s), "blocks": head.height}


def append_latency(block_size: int, count: int, workdir: Path) -> tuple[float, float]:
    """Median and p95 seconds of ``ChainStore.append`` for pre-built signed blocks."""
    key = make_keys("ed25519", 1)[0]
    genesis = genesis_block(Genesis((Member.of(key),), bytes(32)))
    blocks, head = [], genesis
    for n in range(count):
        txs = tuple(sign(Transaction(key.address, 0.0, "note", {"n": n}, n * block_size + i),
                         key) for i in range(block_size))
        head = sign(Block.create(head.hash, head.height + 1, key.address, 0.0, txs), key)
        blocks.append(head)
    path = workdir / f"latency-{block_size}.sqlite"
    times = []
    with ChainStore(path) as store:
        store.append(genesis)
        for b in blocks:
            t0 = time.perf_counter()
            store.append(b)
            times.append(time.perf_counter() - t0)
    path.unlink()
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))]


def blob_rates(seconds: float, workdir: Path, key: bytes | None) -> tuple[float, float]:
    """Write and read MB/s of distinct 1.7 MB blobs (atomic write; verified read)."""
    store = BlobStore(workdir / ("blobs-enc" if key else "blobs"), key)
    base = bytearray(os.urandom(MODEL_BYTES))
    ids, written, t_write = [], 0, 0.0
    while t_write < seconds / 2:
        base[:8] = len(ids).to_bytes(8, "little")
        data = bytes(base)
        t0 = time.perf_counter()
        ids.append(store.put(data))
        t_write += time.perf_counter() - t0
        written += len(data)
    read, t_read = 0, 0.0
    while t_read < seconds / 2:
        for cid in ids:
            t0 = time.perf_counter()
            read += len(store.get(cid))
            t_read += time.perf_counter() - t0
    return written / t_write / 1e6, read / t_read / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0,
                        help="per transaction measurement (default 4)")
    parser.add_argument("--block-size", type=int, default=500, help="transactions per block")
    parser.add_argument("--latency-blocks", type=int, default=60, help="blocks timed per size")
    parser.add_argument("--schemes", default="ed25519,rsa", help="comma-separated")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where to write the databases and blobs (default: a temp dir)")
    parser.add_argument("--quick", action="store_true",
                        help="Ed25519 only, 0.5 s, blocks of 50, 5 latency blocks")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.block_size, args.latency_blocks = 0.5, 50, 5
        args.schemes = "ed25519"

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        workdir = Path(tmp)
        print(f"transactions, block size {args.block_size}, one core, durable appends")
        print(f"{'scheme':<9}{'create+sign/s':>14}{'verify+commit/s':>17}{'end-to-end/s':>14}"
              f"{'raw verify/s':>14}{'commit/verify':>15}")
        for scheme in args.schemes.split(","):
            raw = verify_rate(scheme, min(2.0, args.seconds / 2))
            r = tx_pipeline(scheme, args.seconds, args.block_size, workdir)
            goal = ""
            if scheme == "ed25519":
                goal = "  (goal >= 5,000: " + (
                    "met)" if r["committed_per_s"] >= 5000 else "NOT met)")
            print(f"{scheme:<9}{r['created_per_s']:>14,.0f}{r['committed_per_s']:>17,.0f}"
                  f"{r['end_to_end_per_s']:>14,.0f}{raw:>14,.0f}"
                  f"{r['committed_per_s'] / raw:>14.2f}x{goal}")

        print(f"\nblock append latency ({args.latency_blocks} blocks each, fsync per block)")
        for size in (0, args.block_size):
            med, p95 = append_latency(size, args.latency_blocks, workdir)
            print(f"{size:>5} txs/block: median {med * 1e3:7.2f} ms   p95 {p95 * 1e3:7.2f} ms")

        print(f"\nblob store, {MODEL_BYTES / 1e6:.2f} MB blobs (write: temp file, fsync, "
              "rename, dir fsync; read: hash verified)")
        for label, key in (("plain", None), ("aes-gcm", os.urandom(32))):
            w, rd = blob_rates(min(args.seconds, 4.0), workdir, key)
            print(f"{label:<8} write {w:8.1f} MB/s   read {rd:8.1f} MB/s")


if __name__ == "__main__":
    main()
