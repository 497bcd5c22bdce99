"""run_ahead: the producer works on its own thread; order, errors and early stops reach both sides."""

import threading
import time
from collections.abc import Iterator

import pytest

from navembed_pipeline.lib.engine.ahead import run_ahead, run_ahead_batches


def test_items_arrive_in_order_and_the_producer_runs_ahead_of_a_slow_consumer() -> None:
    produced: list[int] = []

    def produce(stop: threading.Event) -> Iterator[int]:
        for i in range(5):
            produced.append(i)
            yield i

    seen = []
    for item in run_ahead(produce):
        if item == 0:
            time.sleep(0.3)  # the consumer is busy (Dagster recording): the producer goes on meanwhile
            assert len(produced) == 5
        seen.append(item)
    assert seen == [0, 1, 2, 3, 4]


def test_an_error_in_the_producer_is_raised_in_the_consumer_after_the_items_before_it() -> None:
    def produce(stop: threading.Event) -> Iterator[int]:
        yield 1
        raise RuntimeError("store down")

    seen = []
    with pytest.raises(RuntimeError, match="store down"):
        for item in run_ahead(produce):
            seen.append(item)
    assert seen == [1]


def test_a_consumer_stopping_early_stops_the_producer_and_waits_for_it() -> None:
    finished = threading.Event()

    def produce(stop: threading.Event) -> Iterator[int]:
        try:
            i = 0
            while not stop.is_set():
                yield i
                i += 1
                time.sleep(0.01)
        finally:
            finished.set()

    items = run_ahead(produce)
    assert next(items) == 0
    items.close()
    assert finished.is_set()  # close() returned only after the producer did


def test_batches_hand_over_everything_made_while_the_consumer_was_busy_in_order() -> None:
    made_all = threading.Event()

    def produce(stop: threading.Event) -> Iterator[int]:
        yield 0
        made_all.wait(5)  # the consumer holds the first item
        yield from range(1, 6)

    bursts = []
    for burst in run_ahead_batches(produce):
        bursts.append(burst)
        if burst == [0]:
            made_all.set()
            time.sleep(0.3)  # busy: the producer makes the other five meanwhile
    assert bursts == [[0], [1, 2, 3, 4, 5]]


def test_batches_deliver_the_items_before_a_producer_error_then_raise_it() -> None:
    def produce(stop: threading.Event) -> Iterator[int]:
        yield 1
        yield 2
        raise RuntimeError("store down")

    seen: list[int] = []
    with pytest.raises(RuntimeError, match="store down"):
        for burst in run_ahead_batches(produce):
            seen.extend(burst)
    assert seen == [1, 2]
