"""semcodec.background: work on a second thread (in_background, ahead)."""

from __future__ import annotations

import threading
import time

import pytest

from semcodec.background import ahead, in_background, mapped


def test_in_background_returns_the_result_and_raises_the_error_in_the_caller():
    assert in_background(lambda a, b: a + b, 2, b=3)() == 5

    def boom() -> None:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        in_background(boom)()


def test_ahead_yields_the_same_items_in_order_made_on_another_thread():
    made_on: list[str] = []

    def items():
        for k in range(20):
            made_on.append(threading.current_thread().name)
            yield k

    assert list(ahead(items())) == list(range(20))
    assert set(made_on) == {"semcodec-ahead"}


def test_ahead_stays_at_most_depth_items_ahead():
    made: list[int] = []

    def items():
        for k in range(50):
            made.append(k)
            yield k

    it = ahead(items(), depth=2)
    assert next(it) == 0
    time.sleep(0.3)  # the producer fills the queue, then waits
    # item 0 taken, items 1-2 queued, item 3 made and waiting for room
    assert len(made) <= 4
    it.close()


def test_ahead_raises_the_producers_error_after_the_items_before_it():
    def items():
        yield 1
        yield 2
        raise RuntimeError("broken block")

    got = []
    with pytest.raises(RuntimeError, match="broken block"):
        for x in ahead(items()):
            got.append(x)
    assert got == [1, 2]


def test_ahead_closed_early_stops_and_joins_the_producer():
    closed = threading.Event()

    def items():
        try:
            k = 0
            while True:
                yield k
                k += 1
        finally:
            closed.set()

    it = ahead(items(), depth=1)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    it.close()  # returns once the producer has stopped
    assert closed.is_set()
    assert not any(t.name == "semcodec-ahead" for t in threading.enumerate())


def test_mapped_keeps_the_order_and_runs_on_the_workers():
    names: set[str] = set()

    def slow_square(k: int) -> int:
        names.add(threading.current_thread().name)
        time.sleep(0.01 * (k % 3))  # later items may finish first
        return k * k

    assert list(mapped(slow_square, range(12), workers=2)) == [k * k for k in range(12)]
    assert names and all(n.startswith("semcodec-map") for n in names)


def test_mapped_reads_its_items_at_most_depth_ahead_and_raises_at_the_failed_item():
    read: list[int] = []

    def items():
        for k in range(100):
            read.append(k)
            yield k

    it = mapped(lambda k: k, items(), workers=2, depth=3)
    assert next(it) == 0
    assert len(read) == 3  # the first result waited for with three submitted
    it.close()

    def fails_at_two(k: int) -> int:
        if k == 2:
            raise KeyError(k)
        return k

    got = []
    with pytest.raises(KeyError):
        for x in mapped(fails_at_two, range(5)):
            got.append(x)
    assert got == [0, 1]
