"""The exits kept for the daemon's life are moved out of the cyclic collector's sight, garbage first, and
settled again only as the book grows by half."""

import gc

from exitd.engine.timing import HeapSettler


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def walked(obj: object) -> bool:
    """Whether a full collection walks `obj`: it is in one of the collector's three generations."""
    return any(o is obj for generation in range(3) for o in gc.get_objects(generation))


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
        HeapSettler().settle(1)
        frozen = not walked(kept)
    finally:
        gc.callbacks.remove(count)
        gc.unfreeze()
    assert sum(collected) >= 2 and frozen and walked(kept)


def test_the_book_is_settled_again_once_it_has_grown_by_half() -> None:
    heap = HeapSettler()
    try:
        settled = []
        for size in (1, 1, 2, 3, 4, 5, 100, 120, 150):
            heap.grown(size)
            settled.append(heap.settled_at)
    finally:
        gc.unfreeze()
    assert settled == [1, 1, 2, 3, 3, 5, 100, 100, 150]
