"""The chain store keeps recently read blocks decoded, and forgets them on a rollback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import chainkit as ck
from fedledger.ledger import store as store_module
from fedledger.ledger.forkchoice import BlockTreeView, longest_chain
from fedledger.ledger.store import BLOCK_CACHE, ChainStore, ForkChoiceError

KEYS = ck.keys(2)
G = ck.genesis(KEYS)
MAIN = ck.chain(G, KEYS[0], 3)


class Decodes:
    """Counts the store's block decodes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.n = 0
        real = store_module.decode_as

        def counting(*args: object, **kwargs: object) -> object:
            self.n += 1
            return real(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(store_module, "decode_as", counting)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChainStore]:
    with ChainStore(tmp_path / "ledger.sqlite") as s:
        s.append(G)
        for b in MAIN:
            s.append(b)
        yield s


def test_repeated_reads_decode_once(store: ChainStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store._blocks.clear()
    decodes = Decodes(monkeypatch)
    for _ in range(5):
        assert store.head() == MAIN[-1]
        assert store.at_height(1) == MAIN[0]
        assert store.get(MAIN[1].hash) == MAIN[1]
    assert decodes.n == 3
    assert store.get(b"\x00" * 32) is None


def test_cache_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = ck.chain(G, KEYS[0], BLOCK_CACHE + 1)
    with ChainStore(tmp_path / "l.sqlite") as s:
        s.append(G)
        for b in blocks:
            s.append(b)
        s._blocks.clear()
        decodes = Decodes(monkeypatch)
        for b in blocks:
            assert s.get(b.hash) == b
        assert len(s._blocks) == BLOCK_CACHE
        s.get(blocks[-1].hash)
        assert decodes.n == BLOCK_CACHE + 1
        s.get(blocks[0].hash)  # the first read was forgotten
        assert decodes.n == BLOCK_CACHE + 2


def test_rolled_back_block_is_not_served_from_memory(tmp_path: Path) -> None:
    """A fork choice reads the new block inside the append, then fails: nothing stored,
    and the block read inside the transaction is not served afterwards."""
    new = MAIN[0]

    def reads_then_fails(view: BlockTreeView) -> bytes:
        assert view.get(new.hash) == new
        return b"\x42" * 32

    with ChainStore(tmp_path / "l.sqlite", fork_choice=reads_then_fails) as s:
        s.append(G)
        with pytest.raises(ForkChoiceError, match="unknown block"):
            s.append(new)
        assert s.get(new.hash) is None
        assert new.hash not in s
        s.fork_choice = longest_chain
        assert s.append(new) is True
        assert s.head() == new


def test_reopened_store_reads_from_disk(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    with ChainStore(path) as s:
        s.append(G)
        s.append(MAIN[0])
        assert s.head() == MAIN[0]
    with ChainStore(path) as s:
        assert s._blocks == {}
        assert s.head() == MAIN[0]
