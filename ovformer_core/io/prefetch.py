"""Run an iterator on a background thread, a bounded number of items ahead of its consumer.

Used to overlap video decoding with model compute: decoding releases the GIL inside FFmpeg, so one
extra thread is enough to hide most of its cost.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Generic, TypeVar

T = TypeVar("T")

#: How long a blocked producer waits before re-checking whether the consumer has gone away (seconds).
_POLL_SECONDS = 0.05


class _End:
    """Marks the end of the producer's items."""


class _Failure:
    """Carries an exception raised by the producer to the consumer."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class BackgroundIterator(Generic[T]):
    """Iterate ``make_iterator()`` on a daemon thread, at most ``max_ahead`` items ahead.

    The iterator is created *on* the worker thread, so resources it opens (a video container) live
    and die there. An exception in the producer is re-raised in the consumer at the point where the
    failed item would have arrived. ``close()`` (also called by ``with`` and when the iteration ends
    or fails) stops the producer, closes its iterator and joins the thread, so no decoder keeps
    running after the consumer is gone.

    Args:
        make_iterator: builds the iterator to run; called once, on the worker thread.
        max_ahead: queue capacity, i.e. how many finished items may wait for the consumer (>= 1).
    """

    def __init__(self, make_iterator: Callable[[], Iterator[T]], max_ahead: int) -> None:
        if max_ahead < 1:
            raise ValueError(f"max_ahead must be at least 1, got {max_ahead}")
        self._queue: queue.Queue[T | _End | _Failure] = queue.Queue(maxsize=max_ahead)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(
            target=self._produce, args=(make_iterator,), name="ovformer-prefetch", daemon=True
        )
        self._thread.start()

    def _put(self, item: T | _End | _Failure) -> bool:
        """Block until ``item`` is queued or the consumer has closed us; True if it was queued."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, make_iterator: Callable[[], Iterator[T]]) -> None:
        iterator: Iterator[T] | None = None
        try:
            iterator = make_iterator()
            for item in iterator:
                if not self._put(item):
                    return
            self._put(_End())
        except BaseException as err:  # noqa: B036 - every failure must reach the consumer
            self._put(_Failure(err))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    def __iter__(self) -> BackgroundIterator[T]:
        return self

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        item = self._queue.get()
        if isinstance(item, _End):
            self.close()
            raise StopIteration
        if isinstance(item, _Failure):
            self.close()
            raise item.error
        return item

    def close(self) -> None:
        """Stop the producer, drop queued items and wait for the thread to finish."""
        self._done = True
        self._stop.set()
        # Drain so a producer blocked on a full queue notices the stop flag promptly.
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._thread is not threading.current_thread():
            self._thread.join()

    def __enter__(self) -> BackgroundIterator[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
