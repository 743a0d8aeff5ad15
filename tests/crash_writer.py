"""Child process of tests/test_store_crash.py: append blocks to a store until killed.

Usage: python crash_writer.py DB_PATH SALT

Opens (or creates) the store, then appends signed blocks in a loop on top of its head,
now and then a sibling fork block (so reorgs happen too). After each append has returned
(its SQLite transaction committed) it prints ``<height> <hash hex>`` and flushes, so the
parent knows which blocks must survive a SIGKILL. Each line goes out in one write, so a
kill leaves whole lines; the parent still ignores a partial last line.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import chainkit as ck
from fedledger.ledger.store import ChainStore


def main() -> None:
    path, salt = Path(sys.argv[1]), int(sys.argv[2])
    keys = ck.keys(3)
    rng = random.Random(salt)
    with ChainStore(path) as store:
        if store.block_count() == 0:
            store.append(ck.genesis(keys))
        print("ready", flush=True)
        nonce = 0
        while True:
            head = store.head()
            parent = head
            if head.height > 2 and rng.random() < 0.2:  # a fork: a sibling of the head
                parent = store.get(head.parent)
            nonce += 1
            key = keys[nonce % 3]
            txs = tuple(ck.tx(key, salt * 1_000_000 + nonce * 10 + i) for i in range(4))
            blk = ck.block(parent, key, txs, salt=salt * 1000 + nonce % 1000)
            store.append(blk)
            # one write per record (print writes each value apart under ``python -u``)
            sys.stdout.write(f"{blk.height} {blk.hash.hex()}\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
