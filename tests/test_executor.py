"""The job executor interface: inline and thread executors give the same results."""

from __future__ import annotations

import threading

import pytest

from fedledger.learning.executor import EXECUTORS, InlineExecutor, ThreadExecutor


def test_inline_runs_now_in_the_callers_thread():
    seen = []
    future = InlineExecutor().submit(lambda a, b: seen.append(threading.get_ident()) or a + b, 2, 3)
    assert future.done() and future.result() == 5
    assert seen == [threading.get_ident()]


def test_inline_keeps_the_error_in_the_future():
    def boom() -> None:
        raise ValueError("bad job")

    future = InlineExecutor().submit(boom)
    with pytest.raises(ValueError, match="bad job"):
        future.result()


def test_thread_runs_elsewhere_and_in_order():
    executor = ThreadExecutor(prefix="test-jobs")
    order: list[int] = []
    futures = [executor.submit(order.append, i) for i in range(20)]
    for f in futures:
        f.result(timeout=10)
    assert order == list(range(20))
    names = executor.submit(lambda: threading.current_thread().name).result(timeout=10)
    assert names.startswith("test-jobs")
    executor.shutdown()


def test_registered_and_validated():
    assert {"inline", "thread"} <= set(EXECUTORS.names())
    with pytest.raises(ValueError, match="threads must be >= 1"):
        ThreadExecutor(0)
