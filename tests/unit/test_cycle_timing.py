"""The exits kept for the daemon's life are moved out of the cyclic collector's sight, garbage first."""

import gc

from exitd.engine.timing import heap_settled


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_settling_frees_garbage_cycles_then_freezes_what_is_left() -> None:
    collected: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "stop":
            collected.append(info["collected"])

    kept = Node()
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle only the collector frees
    del a, b
    gc.callbacks.append(count)
    try:
        heap_settled()
    finally:
        gc.callbacks.remove(count)
        # Frozen: in none of the collector's three generations, which are all a collection walks.
        walked = any(o is kept for generation in range(3) for o in gc.get_objects(generation))
        gc.unfreeze()
    assert sum(collected) >= 2
    assert not walked
    assert any(o is kept for generation in range(3) for o in gc.get_objects(generation))  # unfrozen again
