"""The Casper-FFG finality gadget: commit and finalize rules, refusals, slashing, safety."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedledger.ledger.finality import (
    Checkpoint,
    FinalityConflictError,
    FinalityRule,
    FinalityTracker,
    FinalityVote,
    VoteStatus,
)


@dataclass
class Tree:
    """An in-memory block tree: hash -> (parent, height)."""

    blocks: dict[bytes, tuple[bytes | None, int]] = field(default_factory=dict)

    def add(self, name: str, parent: str | None) -> bytes:
        h = name.encode()
        height = 0 if parent is None else self.blocks[parent.encode()][1] + 1
        self.blocks[h] = (None if parent is None else parent.encode(), height)
        return h

    def chain(self, names: list[str], parent: str | None) -> None:
        for name in names:
            self.add(name, parent)
            parent = name

    def cp(self, name: str) -> Checkpoint:
        h = name.encode()
        return Checkpoint(self.blocks[h][1], h)

    def height_of(self, block_hash: bytes) -> int | None:
        entry = self.blocks.get(block_hash)
        return None if entry is None else entry[1]

    def is_ancestor(self, ancestor: bytes, descendant: bytes) -> bool:
        cur: bytes | None = descendant
        while cur is not None:
            if cur == ancestor:
                return True
            cur = self.blocks[cur][0]
        return False


MEMBERS = [bytes([i]) * 4 for i in range(1, 5)]  # 4 members: a link needs 3 votes


def make(interval: int = 2) -> tuple[Tree, FinalityTracker]:
    tree = Tree()
    tree.add("g", None)
    # main chain g-a1-a2-a3-a4-a5-a6, fork from a1: b2-b3-b4
    tree.chain(["a1", "a2", "a3", "a4", "a5", "a6"], "g")
    tree.chain(["b2", "b3", "b4"], "a1")
    rule = FinalityRule(interval, Fraction(2, 3), frozenset(MEMBERS))
    return tree, FinalityTracker(rule, tree.cp("g"))


def vote_all(tracker: FinalityTracker, tree: Tree, s: str, t: str, voters: list[bytes]) -> list:
    return [tracker.add_vote(FinalityVote(v, tree.cp(s), tree.cp(t)), tree) for v in voters]


def test_rule_validation() -> None:
    members = frozenset(MEMBERS)
    with pytest.raises(ValueError, match="interval must be >= 1, got 0"):
        FinalityRule(0, Fraction(2, 3), members)
    with pytest.raises(ValueError, match=r"threshold must be in \[1/2, 1\).*got 1/3"):
        FinalityRule(2, Fraction(1, 3), members)
    with pytest.raises(ValueError, match=r"got 1$|got 1;"):
        FinalityRule(2, Fraction(1), members)
    with pytest.raises(ValueError, match="must be exact"):
        FinalityRule(2, 2 / 3, members)  # type: ignore[arg-type]
    assert FinalityRule(2, "2/3", members).threshold == Fraction(2, 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="committee is empty"):
        FinalityRule(2, Fraction(2, 3), frozenset())
    assert FinalityRule(3, Fraction(2, 3), members).is_checkpoint(6)
    assert not FinalityRule(3, Fraction(2, 3), members).is_checkpoint(4)


@pytest.mark.parametrize(("k", "need"), [(3, 3), (4, 3), (6, 5), (7, 5), (20, 14)])
def test_more_than_two_thirds(k: int, need: int) -> None:
    rule = FinalityRule(1, Fraction(2, 3), frozenset(bytes([i + 1]) for i in range(k)))
    assert rule.min_votes == need
    assert rule.quorum(need) and not rule.quorum(need - 1)


def test_genesis_is_committed_and_finalized() -> None:
    tree, tr = make()
    assert tr.finalized == tree.cp("g")
    assert tr.committed() == (tree.cp("g"),)


def test_commit_then_finalize_on_adjacent_link() -> None:
    tree, tr = make()
    results = vote_all(tr, tree, "g", "a2", MEMBERS[:2])
    assert all(r.accepted for r in results) and not tr.is_committed(tree.cp("a2"))
    r = vote_all(tr, tree, "g", "a2", MEMBERS[2:3])[0]
    assert r.committed == (tree.cp("a2"),)
    assert tr.is_committed(tree.cp("a2")) and tr.finalized == tree.cp("g")
    vote_all(tr, tree, "a2", "a4", MEMBERS[:2])
    r = vote_all(tr, tree, "a2", "a4", MEMBERS[3:])[0]
    assert r.committed == (tree.cp("a4"),)
    assert r.finalized == (tree.cp("a2"),)
    assert tr.finalized == tree.cp("a2")
    assert tr.finalized_checkpoints() == (tree.cp("g"), tree.cp("a2"))


def test_skip_link_commits_but_does_not_finalize() -> None:
    tree, tr = make()
    vote_all(tr, tree, "g", "a2", MEMBERS[:3])
    results = vote_all(tr, tree, "a2", "a6", MEMBERS[:3])
    assert results[-1].committed == (tree.cp("a6"),)
    assert results[-1].finalized == ()
    assert tr.finalized == tree.cp("g")


def test_votes_wait_for_their_source_to_commit() -> None:
    tree, tr = make()
    vote_all(tr, tree, "a2", "a4", MEMBERS[:3])
    assert not tr.is_committed(tree.cp("a4"))
    r = vote_all(tr, tree, "g", "a2", MEMBERS[:3])[-1]
    assert r.committed == (tree.cp("a2"), tree.cp("a4"))
    assert r.finalized == (tree.cp("a2"),)
    assert tr.finalized == tree.cp("a2")


def test_refusals_name_the_reason() -> None:
    tree, tr = make()
    g, a2, a3, b2, b4 = (tree.cp(n) for n in ["g", "a2", "a3", "b2", "b4"])
    m = MEMBERS[0]
    cases = [
        (FinalityVote(b"\x09" * 4, g, a2), VoteStatus.NOT_MEMBER, "not in the committee"),
        (FinalityVote(m, g, a3), VoteStatus.NOT_CHECKPOINT, "multiples of 2"),
        (FinalityVote(m, a2, g), VoteStatus.BAD_LINK, "must be above source"),
        (FinalityVote(m, g, Checkpoint(2, b"zz")), VoteStatus.UNKNOWN_BLOCK, "unknown"),
        (FinalityVote(m, g, Checkpoint(4, a2.hash)), VoteStatus.WRONG_HEIGHT, "has height 2"),
        (FinalityVote(m, a2, b4), VoteStatus.NOT_DESCENDANT, "does not descend"),
    ]
    for vote, status, text in cases:
        r = tr.add_vote(vote, tree)
        assert r.status is status and text in r.detail, (status, r)
        assert r.evidence is None
    assert tr.add_vote(FinalityVote(m, g, b2), tree).accepted
    assert tr.add_vote(FinalityVote(m, g, b2), tree).status is VoteStatus.DUPLICATE
    assert tr.rejected[VoteStatus.NOT_MEMBER] == 1
    assert tr.evidence() == ()


def test_double_vote_is_evidence_and_slashes() -> None:
    tree, tr = make()
    m = MEMBERS[0]
    first = FinalityVote(m, tree.cp("g"), tree.cp("a2"))
    second = FinalityVote(m, tree.cp("g"), tree.cp("b2"))
    assert tr.add_vote(first, tree).accepted
    r = tr.add_vote(second, tree)
    assert r.status is VoteStatus.DOUBLE_VOTE
    assert r.evidence is not None and r.evidence.earlier == first and r.evidence.offending == second
    assert tr.evidence() == (r.evidence,)
    assert tr.slashed() == {m}
    later = tr.add_vote(FinalityVote(m, tree.cp("a2"), tree.cp("a4")), tree)
    assert later.status is VoteStatus.SLASHED_VOTER
    assert tr.votes_for(tree.cp("g"), tree.cp("b2")) == frozenset()


@pytest.mark.parametrize("order", ["outer_first", "inner_first"])
def test_surround_vote_is_evidence(order: str) -> None:
    tree, tr = make()
    m = MEMBERS[1]
    outer = FinalityVote(m, tree.cp("g"), tree.cp("a6"))
    inner = FinalityVote(m, tree.cp("a2"), tree.cp("a4"))
    first, second = (outer, inner) if order == "outer_first" else (inner, outer)
    assert tr.add_vote(first, tree).accepted
    r = tr.add_vote(second, tree)
    assert r.status is VoteStatus.SURROUND_VOTE and r.evidence is not None
    assert tr.rejected[VoteStatus.SURROUND_VOTE] == 1


def test_same_target_from_two_sources_is_not_slashable() -> None:
    tree, tr = make()
    m = MEMBERS[2]
    assert tr.add_vote(FinalityVote(m, tree.cp("g"), tree.cp("a4")), tree).accepted
    assert tr.add_vote(FinalityVote(m, tree.cp("a2"), tree.cp("a4")), tree).accepted


def test_restore_rebuilds_marks() -> None:
    tree, tr = make()
    vote_all(tr, tree, "g", "a2", MEMBERS[:3])
    tr.add_vote(FinalityVote(MEMBERS[3], tree.cp("g"), tree.cp("a2")), tree)
    tr.add_vote(FinalityVote(MEMBERS[3], tree.cp("g"), tree.cp("b2")), tree)  # double
    vote_all(tr, tree, "a2", "a4", MEMBERS[:3])
    accepted = [v for vs in tr._votes.values() for v in vs]
    again = FinalityTracker.restore(tr.rule, tree.cp("g"), accepted, tr.evidence())
    assert again.committed() == tr.committed()
    assert again.finalized_checkpoints() == tr.finalized_checkpoints()
    assert again.slashed() == tr.slashed() == {MEMBERS[3]}


def test_forged_conflicting_state_is_detected() -> None:
    tree, _ = make()
    rule = FinalityRule(2, Fraction(2, 3), frozenset(MEMBERS))
    forged = [FinalityVote(m, tree.cp("g"), tree.cp(t)) for t in ["a2", "b2"] for m in MEMBERS]
    forged += [FinalityVote(m, tree.cp("a2"), tree.cp("a4")) for m in MEMBERS]
    forged += [FinalityVote(m, tree.cp("b2"), tree.cp("b4")) for m in MEMBERS]
    with pytest.raises(FinalityConflictError, match="not on one chain"):
        FinalityTracker.restore(rule, tree.cp("g"), forged)


# ---------------------------------------------------------------- safety property


def conflicting(tree: Tree, a: Checkpoint, b: Checkpoint) -> bool:
    return not (tree.is_ancestor(a.hash, b.hash) or tree.is_ancestor(b.hash, a.hash))


def random_tree(back: list[int]) -> Tree:
    """Block i's parent is ``back[i]`` blocks before it: long chains with forks."""
    tree = Tree()
    tree.add("0", None)
    for i, b in enumerate(back, start=1):
        tree.add(str(i), str(max(0, i - b)))
    return tree


def source_for(node: FinalityTracker, tree: Tree, target: Checkpoint) -> Checkpoint:
    """The highest checkpoint ``node`` has committed that ``target`` descends from."""
    below = [c for c in node.committed() if c.height < target.height]
    return max(c for c in below if tree.is_ancestor(c.hash, target.hash))


Round = tuple[int, int, int, int, int]


def simulate(tree: Tree, n: int, faulty: int, rounds: list[Round]) -> list[FinalityTracker]:
    """Two honest nodes count votes from ``n`` members of which ``faulty`` equivocate.

    A round ``(target, mask, view, target_a, target_b)``: the honest members picked by
    ``mask`` vote for ``target`` from the highest committed ancestor in node ``view``'s
    view, unless that would break a slashing condition (honest members never do), and
    send the vote to both nodes; every faulty member votes ``target_a`` to node A and
    ``target_b`` to node B, each from that node's highest committed ancestor.
    """
    members = [bytes([i + 1]) * 4 for i in range(n)]
    rule = FinalityRule(2, Fraction(2, 3), frozenset(members))
    cps = sorted(tree.cp(h.decode()) for h, (_, ht) in tree.blocks.items() if ht % 2 == 0)
    nodes = [FinalityTracker(rule, cps[0]), FinalityTracker(rule, cps[0])]
    if len(cps) < 2:
        return nodes
    history: dict[bytes, list[FinalityVote]] = {m: [] for m in members}

    def pick(i: int, node: FinalityTracker) -> Checkpoint:
        """Even i: a checkpoint R above ``node``'s highest committed one, on its chain (the
        honest next step, when there is one); odd i: any checkpoint but genesis."""
        top = node.highest_committed
        nxt = [c for c in cps if c.height == top.height + 2 and tree.is_ancestor(top.hash, c.hash)]
        if i % 2 == 0 and nxt:
            return nxt[i // 2 % len(nxt)]
        return cps[1 + i // 2 % (len(cps) - 1)]

    for target, mask, view, target_a, target_b in rounds:
        t = pick(target, nodes[view])
        s = source_for(nodes[view], tree, t)
        for k, m in enumerate(members[faulty:]):
            vote = FinalityVote(m, s, t)
            if not mask >> k & 1 or any(_breaks(old, vote) for old in history[m]):
                continue
            history[m].append(vote)
            for node in nodes:
                node.add_vote(vote, tree)
        for m in members[:faulty]:
            for node, i in zip(nodes, [target_a, target_b], strict=True):
                t = pick(i, node)
                node.add_vote(FinalityVote(m, source_for(node, tree, t), t), tree)
    return nodes


def _breaks(a: FinalityVote, b: FinalityVote) -> bool:
    if a.target.height == b.target.height and a.target != b.target:
        return True
    return (a.source.height < b.source.height and b.target.height < a.target.height) or (
        b.source.height < a.source.height and a.target.height < b.target.height
    )


def finalized_conflict(tree: Tree, nodes: list[FinalityTracker]) -> bool:
    marks = [cp for node in nodes for cp in node.finalized_checkpoints()]
    return any(conflicting(tree, a, b) for a in marks for b in marks)


def rounds_strategy(n: int) -> st.SearchStrategy[list[Round]]:
    idx = st.integers(0, 40)
    everyone = 2**n - 1
    mask = st.one_of(st.just(everyone), st.just(everyone), st.integers(0, everyone))
    return st.lists(st.tuples(idx, mask, st.integers(0, 1), idx, idx), min_size=8, max_size=40)


@settings(max_examples=200, deadline=None)
@given(
    back=st.lists(st.integers(1, 3), min_size=4, max_size=30),
    n=st.integers(4, 10),
    data=st.data(),
)
def test_no_conflicting_finality_with_under_a_third_faulty(
    back: list[int], n: int, data: st.DataObject
) -> None:
    tree = random_tree(back)
    faulty = data.draw(st.integers(0, (n - 1) // 3), label="faulty")
    nodes = simulate(tree, n, faulty, data.draw(rounds_strategy(n), label="rounds"))
    assert not finalized_conflict(tree, nodes)


def test_a_third_faulty_can_break_safety_across_nodes() -> None:
    """The property above is tight: with 2 of 4 members faulty, two nodes disagree."""
    tree = Tree()
    tree.add("g", None)
    tree.chain(["a1", "a2", "a3", "a4"], "g")
    tree.chain(["b1", "b2", "b3", "b4"], "g")
    cps = sorted(tree.cp(n) for n in ["g", "a2", "a4", "b2", "b4"])
    at = {name: 2 * (cps.index(tree.cp(name)) - 1) + 1 for name in ["a2", "a4", "b2", "b4"]}
    # member 3 votes branch a, member 4 branch b; faulty 1, 2 tell node A "a", node B "b"
    rounds = [
        (at["a2"], 0b01, 0, at["a2"], at["b2"]),
        (at["b2"], 0b10, 1, at["a2"], at["b2"]),
        (at["a4"], 0b01, 0, at["a4"], at["b4"]),
        (at["b4"], 0b10, 1, at["a4"], at["b4"]),
    ]
    node_a, node_b = simulate(tree, 4, 2, rounds)
    assert node_a.finalized == tree.cp("a2")
    assert node_b.finalized == tree.cp("b2")
    assert finalized_conflict(tree, [node_a, node_b])
