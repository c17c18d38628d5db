"""Large buffers through shared memory instead of the pipe.

A pipe copies every byte twice (into the kernel, out of it) and moves at most its buffer
size per wake-up. Above :data:`THRESHOLD` bytes a buffer goes into a file in ``/dev/shm``
instead: the producer writes it once, the consumer maps it and unlinks it at once, so the
numpy array (or the pickle) it rebuilds reads the mapping directly and the memory is
freed when the last reference goes.

Segments are plain files named ``olympipe-<caller pid>-<run token>-<writer pid>-<n>``: no resource tracker is
involved, and the supervisor removes whatever is left under the run's prefix once every
process that could touch them is dead, also after a crash.
"""

from __future__ import annotations

import glob
import itertools
import mmap
import os

SHM_DIR = "/dev/shm"
THRESHOLD = 64 * 1024
_counter = itertools.count()
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)


def available() -> bool:
    """Whether this machine has a ``/dev/shm`` to use."""
    return os.path.isdir(SHM_DIR) and os.access(SHM_DIR, os.W_OK)


def write_segment(prefix: str, data: memoryview) -> str:
    """Write ``data`` into a new segment and return its name."""
    name = f"{prefix}-{os.getpid()}-{next(_counter)}"
    fd = os.open(os.path.join(SHM_DIR, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        view = data.cast("B") if data.format != "B" or data.ndim != 1 else data
        written = 0
        total = view.nbytes
        while written < total:
            written += os.write(fd, view[written:])
    finally:
        os.close(fd)
    return name


def take_segment(name: str, size: int) -> memoryview:
    """Map a segment, unlink it, and return a writable view that owns the mapping."""
    path = os.path.join(SHM_DIR, name)
    fd = os.open(path, os.O_RDWR)
    try:
        # Prefault the pages in one call rather than one page fault per 4 KiB on first touch.
        mapping = mmap.mmap(fd, size, flags=mmap.MAP_SHARED | _POPULATE)
    finally:
        os.close(fd)
        os.unlink(path)
    return memoryview(mapping)


def remove_all(prefix: str) -> int:
    """Unlink every segment left under ``prefix``; returns how many there were."""
    removed = 0
    for path in glob.glob(os.path.join(SHM_DIR, f"{glob.escape(prefix)}-*")):
        try:
            os.unlink(path)
            removed += 1
        except FileNotFoundError:
            pass
    return removed
