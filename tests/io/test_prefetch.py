"""Background iteration: same items, errors re-raised, producer stopped on close."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from ovformer_core.io.prefetch import BackgroundIterator


def test_yields_every_item_in_order() -> None:
    with BackgroundIterator(lambda: iter(range(50)), max_ahead=3) as items:
        assert list(items) == list(range(50))


def test_producer_error_reaches_consumer_after_earlier_items() -> None:
    def failing() -> Iterator[int]:
        yield 1
        yield 2
        raise KeyError("boom")

    items = BackgroundIterator(failing, max_ahead=1)
    assert next(items) == 1
    assert next(items) == 2
    with pytest.raises(KeyError, match="boom"):
        next(items)
    with pytest.raises(StopIteration):
        next(items)


def test_close_stops_a_blocked_producer_and_runs_its_cleanup() -> None:
    closed = threading.Event()

    def endless() -> Iterator[int]:
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()

    items = BackgroundIterator(endless, max_ahead=2)
    assert next(items) == 0
    items.close()
    assert closed.is_set()
    assert not items._thread.is_alive()


def test_rejects_empty_queue() -> None:
    with pytest.raises(ValueError):
        BackgroundIterator(lambda: iter(()), max_ahead=0)
