from __future__ import annotations

import gc
import threading

import pytest

from app.gcpause import collector_paused


@pytest.fixture(autouse=True)
def _collector_on() -> None:
    gc.enable()
    yield
    gc.enable()


def test_paused_inside_and_resumed_after() -> None:
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_resumed_after_an_error() -> None:
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_nested_pauses_resume_at_the_outermost() -> None:
    with collector_paused():
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_collector_turned_off_elsewhere_stays_off() -> None:
    gc.disable()
    with collector_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_concurrent_pauses_resume_when_the_last_ends() -> None:
    entered, release = threading.Barrier(2), threading.Event()
    done = threading.Event()

    def other() -> None:
        with collector_paused():
            entered.wait()
            release.wait(5)
        done.set()

    t = threading.Thread(target=other)
    t.start()
    with collector_paused():
        entered.wait()
    assert not gc.isenabled()  # the other thread's pause is still running
    release.set()
    t.join(5)
    assert done.is_set() and gc.isenabled()


def test_cycles_made_during_a_pause_are_collected_after_it() -> None:
    class Node:
        def __init__(self) -> None:
            self.me = self

    import weakref

    with collector_paused():
        node = Node()
        ref = weakref.ref(node)
        del node
        assert ref() is not None  # a cycle: reference counting cannot free it
    gc.collect()
    assert ref() is None
