"""Segment files made ahead of need, off the path of the worker that writes them.

A new segment's pages are allocated and zeroed by the kernel as they are first written: for
4 MiB, about 0.4 of the 1.1 ms a fresh write takes. A stage whose results the caller keeps,
or that makes a new array per item, writes one new segment per item, each on the stage's
own path. A thread of the worker makes the next files ahead (``posix_fallocate``: pages
allocated and zeroed, nothing copied) while the stage waits on its pipes or computes, so the
write itself is one copy into pages that are already there.

Bounds:

* only in a worker, and only under its own run's prefix (:func:`enable`): the run removes
  whatever is left under it once every worker is dead, also after a crash, and no thread
  outlives the run it makes files for;
* only after two segments of the same size in a row, and of at least :data:`MIN_BYTES`;
* at most :data:`AHEAD` files, all of the size last written; a change of size drops them;
* none while ``/dev/shm`` is more than half full, and none of a size that once failed to
  fit.
"""

from __future__ import annotations

import collections
import os
import threading

from olympipe._transport import shm

AHEAD = 2  # one measured as good on 4 MiB items; the second absorbs a burst
MIN_BYTES = 1 << 20  # below this, allocating is a small part of a write


class _Stock:
    """The files made ahead for one process, and the thread that makes them."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._ready: collections.deque[tuple[int, str]] = collections.deque()  # (open fd, name)
        self._size = 0  # the size being made ahead; 0: none
        self._last = 0  # the size of the last segment written
        self._refused = 0  # a size that found no room: not made ahead again
        self._making = False  # a file is being made, outside the lock
        self._thread: threading.Thread | None = None
        self._closed = False

    def take(self, size: int) -> tuple[int, str] | None:
        """A file of ``size`` bytes made ahead, open for writing, with its name; ``None``
        when there is none ready (the caller writes a new one, as without a stock)."""
        with self._lock:
            if self._closed:
                return None
            if size != self._size:
                self._drop_ready()
                repeated = size == self._last and size != self._refused
                self._size = size if repeated and size >= MIN_BYTES else 0
                self._last = size
                if self._size and self._thread is None:
                    self._thread = threading.Thread(target=self._make, name="olympipe-stock", daemon=True)
                    self._thread.start()
                self._changed.notify_all()
                return None
            ready = self._ready.popleft() if self._ready else None
            self._changed.notify_all()
            return ready

    def close(self) -> None:
        """Remove the files not used and stop making more: when it returns, none is left."""
        with self._lock:
            self._closed = True
            self._drop_ready()
            self._changed.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()  # one it was making is removed by the thread itself

    def settled(self, timeout: float) -> bool:
        """Wait until the thread has made all it will for now: ``True`` if it did in time."""
        with self._lock:
            return self._changed.wait_for(lambda: not self._making and not self._wanted(), timeout)

    def ready_count(self) -> int:
        """How many files are made and not yet used."""
        with self._lock:
            return len(self._ready)

    def _wanted(self) -> bool:
        return not self._closed and self._size > 0 and len(self._ready) < AHEAD

    def _drop_ready(self) -> None:
        while self._ready:
            fd, name = self._ready.popleft()
            os.close(fd)
            _unlink(name)

    def _make(self) -> None:
        while True:
            with self._lock:
                self._changed.wait_for(lambda: self._closed or self._wanted())
                if self._closed:
                    return
                size = self._size
                self._making = True
            # Half full: the room is for what is in flight (tried again at the next write).
            short = shm.short_of_room()
            made = None if short else _make_file(self.prefix, size)
            with self._lock:
                self._making = False
                if made is None:
                    self._size = 0  # the writes go on without
                    if not short:
                        self._refused = size  # no room, or no fallocate: not tried again
                elif self._closed or size != self._size:
                    os.close(made[0])
                    _unlink(made[1])
                else:
                    self._ready.append(made)
                self._changed.notify_all()


def _make_file(prefix: str, size: int) -> tuple[int, str] | None:
    """A new file of ``size`` bytes, allocated; ``None`` when there is no room for it."""
    name = shm.new_name(prefix)
    try:
        fd = os.open(os.path.join(shm.SHM_DIR, name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    except OSError:  # no file descriptor or inode left: the writes will say so, if it lasts
        return None
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError:  # no room (or no fallocate here): writes go on as without a stock
        os.close(fd)
        _unlink(name)
        return None
    return fd, name


def _unlink(name: str) -> None:
    try:
        os.unlink(os.path.join(shm.SHM_DIR, name))
    except FileNotFoundError:  # the run's end removed it first
        pass


_stock: _Stock | None = None  # a worker's own: one stock per worker process (see enable)


def enable(prefix: str) -> None:
    """Make files ahead in this process, for segments written under ``prefix`` (a worker's
    run)."""
    global _stock
    _stock = _Stock(prefix)


def take(prefix: str, size: int) -> tuple[int, str] | None:
    """A file made ahead for a segment of ``size`` bytes under ``prefix``, open for writing,
    with its name; ``None``: write a new one."""
    stock = _stock
    if stock is None or stock.prefix != prefix:
        return None
    return stock.take(size)


def close() -> None:
    """Stop making files ahead and remove those not used."""
    global _stock
    stock, _stock = _stock, None
    if stock is not None:
        stock.close()


def _forget() -> None:
    # A child forked by a stage: the files and the thread are the parent's.
    global _stock
    _stock = None


os.register_at_fork(after_in_child=_forget)
