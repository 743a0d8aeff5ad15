"""The conformance kit's hostile inputs (check 2 of ``conformance``): every message
type of every registered protocol with garbled fields (one at a time, and one level
down inside the records they hold), its well-formed form from unknown senders and from
the node itself, other protocols' messages, and host events the node never asked for.

A node must never raise on any of them and must count each one observably: in its
boundary gate (``node.gate.rejections()``, as every ``KitNode`` has) or, without a gate,
in an emitted ``rejected`` metric. ``python tests/conformance_hostile.py`` prints a
survey (fed, raised, not counted, per protocol and class) to keep :data:`KNOWN_GAPS`
and :data:`KNOWN_RAISES` honest.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from conformance import CONFORMANCE_CONFIGS, builtin_protocols, conformance_config, protocol_of
from fedledger.assembly.build import Experiment, build_experiment
from fedledger.assembly.plugins import registries
from fedledger.codec import decode, encode
from fedledger.learning.jobs import EvalResult, TrainResult
from fedledger.protocols.base import (
    BlobReceived,
    EmitMetric,
    Event,
    JobFinished,
    Message,
    MessageReceived,
    ProtocolNode,
    RunJob,
    Start,
    TimerFired,
)

# ---------------------------------------------------------------- 2. hostile input

#: Metric names under which a node without a :class:`~fedledger.protocols.kit.gate.Gate`
#: may count refused input (``rejected``: the common name; ``rejected_updates``: vanilla's).
REJECT_METRICS = frozenset({"rejected", "rejected_updates"})


def rejections(node: ProtocolNode, effects: Sequence[object] = ()) -> float:
    """What ``node`` has observably counted as refused: its boundary gate's total (a
    ``gate`` attribute with ``rejections()``, as every ``KitNode`` has), else the
    ``rejected`` metrics among ``effects``."""
    gate = getattr(node, "gate", None)
    if gate is not None and callable(getattr(gate, "rejections", None)):
        return float(sum(gate.rejections().values()))
    return float(
        sum(e.value for e in effects if isinstance(e, EmitMetric) and e.name in REJECT_METRICS)
    )


#: The classes of hostile input, each one test per protocol.
INPUT_CLASSES = (
    "bad-values",  # a garbled field the codec carries: bad ints, NaN vectors, empty bytes
    "wrong-types",  # a garbled field the codec refuses (simulator only, see crosses_a_wire)
    "forged-records",  # well-formed messages whose records are unsigned (zero keys, hashes)
    "unknown-sender",  # a well-formed message from a node that is not a member
    "self-sender",  # a well-formed message that claims to come from the node itself
    "foreign-messages",  # messages of other protocols, and of no protocol at all
    "unknown-timers",  # TimerFired with a key the node never set
    "unknown-jobs",  # JobFinished with a job id the node never asked for
    "wrong-results",  # JobFinished for the node's own jobs with a result of the wrong type
    "unknown-blobs",  # BlobReceived for a content id it never fetched, garbage bytes
)


@dataclass(frozen=True)
class HostileInput:
    kind: str  # one of INPUT_CLASSES
    label: str  # what is wrong with it, for failure messages
    event: Event


def message_types(protocol: str) -> tuple[type[Message], ...]:
    """Every concrete message type defined in ``protocol``'s package."""
    package = registries()["protocol"].get(protocol_of(protocol)).factory.__module__
    package = package.rsplit(".", 1)[0] if not _is_package(package) else package
    found: dict[str, type[Message]] = {}
    todo = list(Message.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__ == package or cls.__module__.startswith(package + "."):
            found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return tuple(found[k] for k in sorted(found))


def _is_package(module: str) -> bool:
    import importlib

    return hasattr(importlib.import_module(module), "__path__")


@dataclass(frozen=True)
class _Stray(Message):
    """A message type no protocol knows."""

    payload: bytes = b"\x00"


def _hints(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls)}


def _force(cls: type, values: Mapping[str, Any]) -> Any:
    """An instance of a frozen dataclass holding ``values``: through its constructor,
    or, if that refuses them, by setting the fields directly (a hostile peer in the
    simulator hands over objects, not bytes)."""
    try:
        return cls(**values)
    except Exception:  # any refusal: build it anyway
        obj = object.__new__(cls)
        for name, value in values.items():
            object.__setattr__(obj, name, value)
        return obj


def plausible(hint: Any, dim: int, depth: int = 0) -> Any:
    """A value of type ``hint``: right in shape, meaningless in content (zero hashes,
    no signatures), so records built from it fail their checks."""
    origin = typing.get_origin(hint)
    if hint is Any or depth > 4:
        return None
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return plausible(args[0], dim, depth) if args else None
    if origin is tuple:
        args = typing.get_args(hint)
        return (plausible(args[0], dim, depth + 1),) if args else ()
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return {}
    if hint is bool:
        return False
    if hint is int:
        return 1
    if hint is float:
        return 1.0
    if hint is str:
        return "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
    if hint is bytes:
        return bytes(32)
    if hint is np.ndarray:
        return np.zeros(dim, np.float32)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        fields = {n: plausible(h, dim, depth + 1) for n, h in _hints(hint).items()}
        return _force(hint, fields)
    return None


def _holds_records(hint: Any) -> bool:
    """Whether a field of type ``hint`` holds records (dataclasses, e.g. signed ones)."""
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return True
    return any(_holds_records(a) for a in typing.get_args(hint) if a is not Ellipsis)


def _garbage(dim: int) -> list[tuple[str, Any]]:
    nan = np.full(dim, np.nan, np.float32)
    return [
        ("None", None),
        ("text", "garbage"),
        ("a dict", {"k": 1}),
        ("a stray record", _Stray()),
        ("a tuple of text", ("x",)),
        ("a float", 1.5),
        ("a list", [1, 2]),
        ("-1", -1),
        ("0", 0),
        ("2**80", 2**80),
        ("-2**80", -(2**80)),
        ("NaN", math.nan),
        ("inf", math.inf),
        ("empty bytes", b""),
        ("garbage bytes", b"\xff\x00\xfe"),
        ("empty text", ""),
        ("empty tuple", ()),
        ("a NaN vector", nan),
        ("a vector too long", np.zeros(dim + 3, np.float32)),
        ("an empty vector", np.zeros(0, np.float32)),
        ("a matrix", np.zeros((2, dim), np.float32)),
        ("a float64 vector", np.zeros(dim, np.float64)),
        ("an inf vector", np.full(dim, np.inf, np.float32)),
    ]


#: Garbage that is an ordinary value of a ``float`` field (1.5, 0, -1 or 2**80 are all
#: possible losses or timestamps): there only NaN, inf and wrong types are garbage.
_ORDINARY_FLOATS = frozenset({"a float", "-1", "0", "2**80", "-2**80"})


def _garbage_for(hint: Any, dim: int) -> list[tuple[str, Any]]:
    """:func:`_garbage` for a field of type ``hint``, less its ordinary values."""
    if hint is float:
        return [(w, v) for w, v in _garbage(dim) if w not in _ORDINARY_FLOATS]
    return _garbage(dim)


def crosses_a_wire(message: Message) -> bool:
    """Whether the strict codec encodes and decodes ``message``: what a real network can
    deliver. A message it refuses (a wrongly typed field) reaches a node only in the
    simulator without ``network.encode``, from a faulty protocol node's own code."""
    try:
        decode(encode(message))
    except Exception:  # any refusal
        return False
    return True


def hostile_messages(
    own: Sequence[type[Message]], foreign: Sequence[type[Message]], dim: int
) -> Iterator[tuple[str, str, Message]]:
    """(class, label, message): each own type with one field garbled at a time, its
    well-formed (but unsigned) form, and the well-formed forms of foreign types."""
    for cls in own:
        hints = _hints(cls)
        base = {n: plausible(h, dim) for n, h in hints.items()}
        if any(_holds_records(h) for h in hints.values()):
            yield "forged-records", f"{cls.__name__} with unsigned records", _force(cls, base)
        for name, hint in hints.items():
            for what, value in _garbage_for(hint, dim):
                message = _force(cls, {**base, name: value})
                kind = "bad-values" if crosses_a_wire(message) else "wrong-types"
                yield kind, f"{cls.__name__}.{name} = {what}", message
            if not (dataclasses.is_dataclass(hint) and isinstance(hint, type)):
                continue
            inner = {f.name: getattr(base[name], f.name) for f in dataclasses.fields(hint)}
            inner_hints = _hints(hint)
            for sub in inner:  # one level down: a garbled field of a record it holds
                for what, value in _garbage_for(inner_hints.get(sub, Any), dim):
                    message = _force(cls, {**base, name: _force(hint, {**inner, sub: value})})
                    kind = "bad-values" if crosses_a_wire(message) else "wrong-types"
                    yield kind, f"{cls.__name__}.{name}.{sub} = {what}", message
    for cls in foreign:
        hints = _hints(cls)
        message = _force(cls, {n: plausible(h, dim) for n, h in hints.items()})
        yield "foreign-messages", f"{cls.__module__}.{cls.__name__}", message
    yield "foreign-messages", "a message type of no protocol", _Stray()
    yield "foreign-messages", "the bare Message base", Message()


def well_formed(own: Sequence[type[Message]], dim: int) -> list[tuple[str, Message]]:
    return [
        (cls.__name__, _force(cls, {n: plausible(h, dim) for n, h in _hints(cls).items()}))
        for cls in own
    ]


UNKNOWN_TIMER_KEYS = ("", "no-such-timer", "\x00", "round-end:-1:x", "x" * 300)
UNKNOWN_JOB_IDS = ("", "no-such-job", "\x00:\x00", "train:x:y:z", "j" * 300)
BAD_CIDS = ("", "not-a-cid", "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")


def hostile_inputs(
    protocol: str,
    node: ProtocolNode,
    members: Sequence[str],
    own_jobs: Sequence[RunJob],
    dim: int,
    now: float = 1.0,
) -> list[HostileInput]:
    """Every hostile input of every class for ``node`` of ``protocol``."""
    me = node.node_id
    peer = next((m for m in members if m != me), me)
    own = message_types(protocol)
    registered = sorted({protocol_of(p) for p in builtin_protocols()})
    foreign = [t for p in registered if p != protocol_of(protocol) for t in message_types(p)]
    out: list[HostileInput] = []
    for kind, label, message in hostile_messages(own, foreign, dim):
        out.append(HostileInput(kind, f"{label} from {peer}", MessageReceived(now, peer, message)))
    for name, message in well_formed(own, dim):
        for ghost in ("ghost", "", "x" * 300):
            event = MessageReceived(now, ghost, message)
            out.append(HostileInput("unknown-sender", f"{name} from {ghost!r}", event))
        event = MessageReceived(now, me, message)
        out.append(HostileInput("self-sender", f"{name} from itself", event))
    for key in UNKNOWN_TIMER_KEYS:
        out.append(HostileInput("unknown-timers", f"timer {key[:20]!r}", TimerFired(now, key)))
    results: list[tuple[str, Any]] = [
        ("a TrainResult", TrainResult(np.zeros(dim, np.float32), 10, 0.5)),
        ("an EvalResult", EvalResult(0.5, 0.5, 10)),
        ("None", None),
        ("text", "garbage"),
    ]
    for job_id in UNKNOWN_JOB_IDS:
        for what, result in results:
            event = JobFinished(now, job_id, result)
            out.append(HostileInput("unknown-jobs", f"job {job_id[:20]!r} with {what}", event))
    for run in own_jobs:
        wrong = [
            ("None", None),
            ("text", "garbage"),
            ("a NaN TrainResult", TrainResult(np.full(dim, np.nan, np.float32), 10, math.nan)),
            ("a wrong-shape TrainResult", TrainResult(np.zeros(dim + 1, np.float32), 10, 0.5)),
        ]
        for what, result in wrong:
            event = JobFinished(now, run.job_id, result)
            out.append(HostileInput("wrong-results", f"its job {run.job_id!r} with {what}", event))
    for cid in BAD_CIDS:
        for what, data in (("garbage", b"\xff" * 40), ("empty bytes", b""), ("nothing", None)):
            event = BlobReceived(now, cid, peer, data)
            out.append(HostileInput("unknown-blobs", f"blob {cid[:12]!r} with {what}", event))
    return out


@dataclass(frozen=True)
class Outcome:
    """What a node did with one hostile input."""

    input: HostileInput
    raised: BaseException | None
    counted: bool


def feed(node: ProtocolNode, item: HostileInput) -> Outcome:
    before = rejections(node)
    try:
        effects = node.handle(item.event)
    except Exception as exc:  # the check is that nothing escapes
        return Outcome(item, exc, False)
    gate = getattr(node, "gate", None)
    if gate is not None and callable(getattr(gate, "rejections", None)):
        counted = rejections(node) > before
    else:
        counted = rejections(node, effects) > 0
    return Outcome(item, None, counted)


@dataclass
class HostileBench:
    """A built experiment whose nodes have all handled ``Start``; ``own_jobs``: the
    jobs each node asked for on ``Start`` (answered with wrong results)."""

    protocol: str
    exp: Experiment
    own_jobs: dict[str, list[RunJob]]
    dim: int

    def inputs(self, node_id: str) -> list[HostileInput]:
        members = [p.node_id for p in self.exp.plans]
        node = self.exp.nodes[node_id]
        return hostile_inputs(self.protocol, node, members, self.own_jobs[node_id], self.dim)


def hostile_bench(protocol: str, run_dir: Path) -> HostileBench:
    exp = build_experiment(conformance_config(protocol), run_dir)
    own_jobs: dict[str, list[RunJob]] = {}
    for node_id, node in sorted(exp.nodes.items()):
        effects = node.handle(Start(0.0))
        own_jobs[node_id] = [e for e in effects if isinstance(e, RunJob)]
    dim = int(np.asarray(next(iter(exp.nodes.values())).setup.initial_weights).size)
    return HostileBench(protocol, exp, own_jobs, dim)


#: (protocol, input class) -> the gap: bad input of that class the protocol ignores
#: without counting it. Each runs as a strict xfail: remove the entry once it is counted.
KNOWN_GAPS: dict[tuple[str, str], str] = {}

#: (protocol, input class) -> inputs of that class that make ``handle`` raise today.
#: Strict xfails too: remove the entry once the protocol refuses them quietly.
KNOWN_RAISES: dict[tuple[str, str], str] = {}


# ---------------------------------------------------------------- survey


def survey(root: Path) -> str:
    """Per protocol and input class: inputs fed, raised, not counted, with examples.
    ``python tests/conformance.py`` prints it (to update KNOWN_GAPS and KNOWN_RAISES)."""
    lines = []
    for protocol in builtin_protocols():
        if protocol not in CONFORMANCE_CONFIGS:
            lines.append(f"{protocol:10} has no entry in CONFORMANCE_CONFIGS")
            continue
        bench = hostile_bench(protocol, root / protocol)
        try:
            found = [
                feed(bench.exp.nodes[n], item) for n in sorted(bench.exp.nodes)
                for item in bench.inputs(n)
            ]
        finally:
            bench.exp.close()
        for kind in INPUT_CLASSES:
            mine = [o for o in found if o.input.kind == kind]
            raised = [o for o in mine if o.raised is not None]
            missed = [o for o in mine if o.raised is None and not o.counted]
            lines.append(
                f"{protocol:10} {kind:17} fed {len(mine):5} raised {len(raised):4} "
                f"not counted {len(missed):4}"
            )
            lines += [f"    raised: {o.input.label}: {o.raised!r}"[:160] for o in raised[:2]]
            lines += [f"    not counted: {o.input.label}"[:160] for o in missed[:2]]
    return "\n".join(lines)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print(survey(Path(tmp)))
