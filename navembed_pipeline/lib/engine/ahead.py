"""Run a producer on its own thread, ahead of the consumer: the engine embeds while Dagster records.

``run_ahead(produce)`` calls ``produce(stop)`` on a worker thread and yields what it yields, in
order; an exception in the producer is raised in the consumer. When the consumer stops early (an
exception, a cancelled run, ``close()``), ``stop`` is set and the consumer waits for the producer to
notice it and return (``produce`` must check it: the engine does after each batch, then writes what
it embedded and finishes its books), so no engine keeps writing behind a finished step.
"""

import queue
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")
_ITEM, _DONE, _ERROR = "item", "done", "error"


def run_ahead(produce: Callable[[threading.Event], Iterator[T]], *, name: str = "navembed-ahead") -> Iterator[T]:
    """Yield ``produce(stop)``'s items as its thread makes them (an unbounded queue: items are small)."""
    for items in run_ahead_batches(produce, name=name):
        yield from items


def run_ahead_batches(produce: Callable[[threading.Event], Iterator[T]], *,
                      name: str = "navembed-ahead") -> Iterator[list[T]]:
    """Like ``run_ahead``, but each time as a list everything the producer has made by then (at least
    one item): the consumer can handle a burst (e.g. the buckets of one store write) at once."""
    stop = threading.Event()
    items: queue.Queue[tuple[str, object]] = queue.Queue()

    def work() -> None:
        try:
            for item in produce(stop):
                items.put((_ITEM, item))  # after a stop nobody reads these: dropped with the queue
            items.put((_DONE, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            items.put((_ERROR, exc))

    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    try:
        while True:
            ready: list[T] = []
            kind, value = items.get()
            while True:
                if kind == _ERROR:
                    if ready:  # what came before the error still reaches the consumer first
                        yield ready
                    assert isinstance(value, BaseException)
                    raise value
                if kind == _DONE:
                    if ready:
                        yield ready
                    return
                ready.append(value)  # type: ignore[arg-type]
                try:
                    kind, value = items.get_nowait()
                except queue.Empty:
                    break
            yield ready
    finally:
        stop.set()
        worker.join()
