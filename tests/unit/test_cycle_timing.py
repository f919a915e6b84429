"""A cycle runs with Python's cyclic collector paused, and leaves it as it found it."""

import gc

import pytest

from exitd.engine.timing import collection_deferred


def test_the_collector_is_paused_during_a_cycle_and_resumed_after_it() -> None:
    assert gc.isenabled()
    with collection_deferred():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collection_deferred():
        raise RuntimeError("a cycle that fails")
    assert gc.isenabled()


def test_a_collector_paused_by_someone_else_stays_paused() -> None:
    gc.disable()
    try:
        with collection_deferred():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
