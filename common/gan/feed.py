"""Batches made ahead of the step that needs them, on one background thread: the framework-neutral half
of feeding a GPU as fast as it steps (the backend's Feeder is the device half: pinned memory, a copy
stream).

While the device runs step k, the thread gathers the rows of batch k+1 from the dataset (a memory-mapped
cache or an array), scales them to float, draws their noise and hands both to Feeder.stage, which on
CUDA starts their copy to the device. The training thread only takes finished batches, in order.

What stays exactly as an unprefetched loop has it:
- the order: one producer thread makes the items strictly in index order, and they come out in that
  order (an error raised while making item i is raised by the iteration at item i);
- the random numbers: the thread draws the noise from a copy of the run's Generator, and every batch
  carries the Generator's state after its own draw. The loop hands that state back to the run's
  Generator when it trains on the batch, so a checkpoint saves the state of the last step trained,
  never that of a batch made ahead (tests/test_feed.py: bit for bit on CPU, resume mid-epoch included).
- stopping: close() (also on leaving a with block, Ctrl-C's KeyboardInterrupt included) stops the
  thread and joins it; a batch made ahead and never trained is dropped.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

THREAD_NAME = "ganparity-prefetch"
DEPTH = 2  # batches made ahead: one being copied while the step runs, one more to absorb a slow read
_POLL_S = 0.05  # how often a blocked put or get looks whether the other side has gone


@dataclass
class Batch:
    """One training batch, made ahead: its number in the epoch, the dataset rows of the global batch,
    what the backend's Feeder.stage returned (the data and the noise on their way to the device), and
    the noise Generator's state after this batch's draw (what a checkpoint after its step saves)."""

    index: int
    rows: np.ndarray
    staged: Any
    rng_state: dict


class Prefetcher:
    """make(i) for i in range(start, stop), made on one background thread up to `depth` items ahead of
    the iteration, which yields them in order. depth 0 makes each item in the caller's thread when it
    is asked for (no thread: the loop as it was). Use it in a with block, or call close()."""

    def __init__(self, make: Callable[[int], Any], start: int, stop: int, depth: int = DEPTH):
        if depth < 0:
            raise ValueError(f"prefetch depth must be >= 0, got {depth}")
        self._make, self._next, self._stop = make, start, stop
        self._closed = threading.Event()
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        if depth and start < stop:
            self._queue = queue.Queue(maxsize=depth)
            self._thread = threading.Thread(target=self._produce, args=(start,), name=THREAD_NAME, daemon=True)
            self._thread.start()

    def _produce(self, start: int) -> None:
        for i in range(start, self._stop):
            if self._closed.is_set():
                return
            try:
                item = (self._make(i), None)
            except BaseException as e:  # noqa: BLE001 - handed to the training thread, raised there
                item = (None, e)
            if not self._put(item) or item[1] is not None:
                return

    def _put(self, item: tuple) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self._next >= self._stop or self._closed.is_set():
            raise StopIteration
        if self._queue is None:
            item = self._make(self._next)
        else:
            item, error = self._get()
            if error is not None:
                self.close()
                raise error
        self._next += 1
        return item

    def _get(self) -> tuple:
        while True:
            try:
                return self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise RuntimeError("the prefetch thread stopped before the epoch's last batch") from None

    def close(self, timeout: float = 30.0) -> None:
        """Stop making items, drop the ones made ahead, and wait for the thread to end (it finishes the
        item it is making: a batch read and a copy started, never longer)."""
        self._closed.set()
        if self._thread is None:
            return
        while True:  # unblock a put, and let go of staged batches (device memory on CUDA)
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout)
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
