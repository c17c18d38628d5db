"""Large buffers through shared memory instead of the pipe.

A pipe copies every byte twice (into the kernel, out of it) and moves at most its buffer
size per wake-up. Above :data:`THRESHOLD` bytes a buffer goes into a file in ``/dev/shm``
instead: the producer writes it once, the consumer maps it and unlinks it at once, so the
numpy array (or the pickle) it rebuilds reads the mapping directly and the memory is
freed when the last reference goes.

Segments are plain files named ``olympipe-<caller pid>-<run token>-<writer pid>-<n>``: no resource tracker is
involved, and the supervisor removes whatever is left under the run's prefix once every
process that could touch them is dead, also after a crash.

Forwarding: a worker *keeps* the segments it maps (they are unlinked when the last array
using the mapping is gone). When a stage returns such an array unchanged, or changed in
place, its buffer is exactly a kept segment, and :func:`forward` hands the segment's name
on to the next stage instead of copying 4 MiB into a new one: the unlink becomes the next
consumer's business. The caller maps and unlinks at once (its results outlive the run).

A worker that writes many segments of one size writes them into files made ahead of need
by a thread of its own (:mod:`olympipe._transport.stock`): the kernel's allocation of the
pages is then off the stage's path.

Mappings are made by :func:`map_file`, not :class:`mmap.mmap`: an ``mmap.mmap`` keeps a
duplicate of its file descriptor open for as long as it lives, so a caller keeping a
thousand large results (or a stage keeping a thousand arrays) would hit the limit on open
files (often 1024) and fail.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import itertools
import mmap
import os
import weakref

SHM_DIR = "/dev/shm"
THRESHOLD = 64 * 1024
_counter = itertools.count()  # process-wide: segment names must differ across the process's runs
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_int = ctypes.c_int
_libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, _int, _int, _int, ctypes.c_ssize_t)  # last: off_t
_libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_MAP_FAILED = ctypes.c_void_p(-1).value
_READ_WRITE = mmap.PROT_READ | mmap.PROT_WRITE


def map_file(fd: int, size: int, flags: int) -> ctypes.Array[ctypes.c_char]:
    """Map ``size`` bytes of ``fd``, readable and writable (``flags`` as for ``mmap(2)``): a
    buffer that owns the mapping, unmapped once it and every view of it are gone, and that
    keeps no file descriptor open (``fd`` may be closed at once)."""
    address = _libc.mmap(None, size, _READ_WRITE, flags, fd, 0)
    if address is None or address == _MAP_FAILED:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    mapping = (ctypes.c_char * size).from_address(address)
    # Not at exit: an object still in use then would read unmapped memory; the process's
    # end unmaps everything anyway.
    weakref.finalize(mapping, _libc.munmap, address, size).atexit = False
    return mapping


def available() -> bool:
    """Whether this machine has a ``/dev/shm`` to use."""
    return os.path.isdir(SHM_DIR) and os.access(SHM_DIR, os.W_OK)


def new_name(prefix: str) -> str:
    """A name no segment under ``prefix`` has had."""
    return f"{prefix}-{os.getpid()}-{next(_counter)}"


def write_segment(prefix: str, data: memoryview, made: tuple[int, str] | None = None) -> str:
    """Write ``data`` into a new segment and return its name; ``made``: an open file of the
    right size made ahead (see ``stock``), with its name, to write into instead."""
    if made is None:
        name = new_name(prefix)
        path = os.path.join(SHM_DIR, name)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    else:
        fd, name = made
        path = os.path.join(SHM_DIR, name)
    try:
        write_all(fd, as_bytes(data))
    except BaseException:
        os.unlink(path)  # /dev/shm full: a half-written file would keep taking the room
        raise
    finally:
        os.close(fd)
    return name


def as_bytes(data: memoryview) -> memoryview:
    """``data`` as a flat view of bytes (an array's view has its dtype's format and shape)."""
    return data.cast("B") if data.format != "B" or data.ndim != 1 else data


def no_room(exc: OSError) -> bool:
    """Whether ``exc`` says that /dev/shm, or the process's table of open files, is full."""
    return exc.errno in (errno.ENOSPC, errno.EMFILE, errno.ENFILE)


def short_of_room() -> bool:
    """Whether /dev/shm is more than half full."""
    try:
        room = os.statvfs(SHM_DIR)
    except OSError:
        return False
    return room.f_bavail * 2 < room.f_blocks


def _read_out(fd: int, size: int) -> memoryview:
    """A copy of the file ``fd`` in new memory of this process's own."""
    view = memoryview(map_file(-1, size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)).cast("B")
    done = 0
    while done < size:
        read = os.preadv(fd, [view[done:]], done)
        if not read:
            raise OSError(errno.EIO, f"a segment ended after {done} of its {size} bytes")
        done += read
    return view


def write_all(fd: int, view: memoryview | bytes) -> None:
    """Write all of ``view`` to ``fd`` (a write may take part of it)."""
    view = memoryview(view)
    written = 0
    while written < view.nbytes:
        written += os.write(fd, view[written:])


# Segments this process keeps: the address of each mapping -> (name, size, its unlinker).
_kept: dict[int, tuple[str, int, weakref.finalize[..., ctypes.Array[ctypes.c_char]]]] = {}


def take_segment(name: str, size: int, keep: bool = False, private: bool = False) -> memoryview:
    """Map a segment and return a writable view that owns the mapping; the file is
    unlinked now, or (``keep``) once the mapping is no longer used, unless forwarded.
    ``private``: writes stay in this process (the file keeps what was sent)."""
    path = os.path.join(SHM_DIR, name)
    fd = os.open(path, os.O_RDWR)
    if not keep and not private and short_of_room():
        # The caller's result, which it may keep for long: with /dev/shm half full (a
        # container's is often 64 MB), it moves to the caller's own memory, leaving the room
        # to what is in flight rather than sending all that through the pipes.
        try:
            return _read_out(fd, size)
        finally:
            os.close(fd)
            os.unlink(path)
    try:
        # Mapped lazily: a stage that forwards an array never touches its pages, and one that
        # reads them faults them in 64 KiB at a time (the kernel's fault-around), which
        # measured faster than MAP_POPULATE (0.49 against 0.72 ms per 4 MiB read).
        mapping = map_file(fd, size, mmap.MAP_PRIVATE if private else mmap.MAP_SHARED)
    finally:
        os.close(fd)
        if not keep:
            os.unlink(path)
    if keep:
        address = ctypes.addressof(mapping)
        _kept[address] = (name, size, weakref.finalize(mapping, _drop, path, address))
    return memoryview(mapping).cast("B")


def map_private(name: str, size: int) -> memoryview:
    """Map a segment copy-on-write, without unlinking it: several processes share its pages
    until one of them writes (fork's semantics for a stage definition's large buffers)."""
    fd = os.open(os.path.join(SHM_DIR, name), os.O_RDONLY)
    try:
        mapping = map_file(fd, size, mmap.MAP_PRIVATE)
    finally:
        os.close(fd)
    return memoryview(mapping).cast("B")


def forward(buffer: memoryview) -> str | None:
    """The name of the kept segment that is exactly ``buffer``, handed on: from now on the
    process that receives the name unlinks it. ``None`` when ``buffer`` is not one."""
    address = buffer_address(buffer)
    entry = _kept.get(address) if address is not None else None
    if entry is None or entry[1] != buffer.nbytes:
        return None
    name, _size, unlinker = _kept.pop(address)  # type: ignore[arg-type]
    unlinker.detach()
    return name


def buffer_address(buffer: memoryview) -> int | None:
    """Where a writable buffer starts in memory; ``None`` for a read-only one."""
    if buffer.readonly:
        return None
    return ctypes.addressof(ctypes.c_char.from_buffer(buffer))


def _drop(path: str, address: int) -> None:
    _kept.pop(address, None)
    try:
        os.unlink(path)
    except FileNotFoundError:  # teardown removed it first
        pass


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
