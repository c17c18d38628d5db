"""Large buffers that forked workers already hold: sent by address, not copied.

A worker forked from the caller holds, at the same addresses, every page the caller had at
fork time. When a buffer the feeder is about to copy into shared memory still lies in such
pages, unchanged, only its address needs to travel: ``"@<address>"`` in place of a segment
name. A prepared list of arrays then crosses the whole pipeline without a copy, and an array
a stage returns as it arrived goes on the same way.

Whether a page is unchanged is read from ``/proc/self/pagemap``: a page the caller wrote
after the fork is a private copy that only the caller maps (the kernel's *exclusively
mapped* flag), while a page it did not write is still the one its children map. So a
buffer goes by address only when

* the run's workers were forked from a single-threaded caller (nothing else could write in
  the middle of the forks), and the caller has not forked since (a later child would share
  pages the caller wrote after the run's forks);
* every page of it is private anonymous memory, present and mapped by more than the caller;
* no part of it was already sent by address in this run (a worker may change what it gets
  in place; a second delivery of the same bytes must not see that);
* the consumer has one input (two paths could bring the same bytes to one worker).

Errors only ever go the safe way: a page that looks written (the caller's children were the
ones who wrote or dropped it) costs a copy. A worker forwards an address it received on
the same terms, at most once, and never after it has forked.

The caller resolves an address that comes back to the buffer it sent: its results then
share memory with the source's items (as the built-in ``filter`` would), and keep them alive.
"""

from __future__ import annotations

import bisect
import ctypes
import mmap
import os
import threading

PREFIX = "@"
_PAGE = mmap.PAGESIZE
# The top byte of a pagemap entry: bit 63 present, 61 a file's or shared page, 56 exclusively
# mapped. Only private anonymous pages are copied on write: a shared one (a slot or segment
# the caller holds a result in) a worker would change under the caller.
_PRESENT, _FILE, _EXCLUSIVE = 0x80, 0x20, 0x01
_SHARED_PAGE = bytes(b for b in range(256) if b & _PRESENT and not b & (_EXCLUSIVE | _FILE))
_GIVE_UP_AFTER = 32  # a source whose first buffers are all new memory makes new memory

# Process-wide: what a forked worker holds by address depends on the forks of this process
# (any run's), so the count and the pagemap reader are the process's, not a run's.
_forks = 0
_pagemap: tuple[int, int] | None = None  # (pid, fd): /proc/self of the process that opened it
_supported: bool | None = None


def _count_fork() -> None:
    global _forks
    _forks += 1


os.register_at_fork(before=_count_fork)


def fork_count() -> int:
    """How many times this process has forked (through ``os.fork``)."""
    return _forks


def supported() -> bool:
    """Whether this machine tells which pages a process maps alone (Linux pagemap)."""
    global _supported
    if _supported is None:
        try:
            probe = mmap.mmap(-1, _PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            probe[0] = 1
            _supported = _top_bytes(_address(memoryview(probe)), _PAGE) == bytes([_PRESENT | _EXCLUSIVE])
            probe.close()
        except (OSError, ValueError):
            _supported = False
    return _supported


def _address(buffer: memoryview) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(buffer))


def _top_bytes(address: int, nbytes: int) -> bytes:
    """The flag byte of the pagemap entry of every page ``[address, address + nbytes)`` touches."""
    global _pagemap
    pid = os.getpid()
    if _pagemap is None or _pagemap[0] != pid:
        _pagemap = (pid, os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC))
    first = address // _PAGE
    count = (address + nbytes - 1) // _PAGE - first + 1
    return os.pread(_pagemap[1], 8 * count, 8 * first)[7::8]


def _all(flags: bytes, good: bytes) -> bool:
    return bool(flags) and not flags.translate(None, good)


class Sender:
    """The caller's side for one run: which buffers go by address, and what comes back."""

    def __init__(self) -> None:
        self._forks = fork_count()
        self._lock = threading.Lock()
        self._starts: list[int] = []  # sent ranges, sorted by start, never overlapping
        self._ends: dict[int, int] = {}
        self._owners: dict[int, memoryview] = {}  # address -> the buffer sent (keeps it alive)
        self._misses = 0

    def token(self, raw: memoryview) -> str | None:
        """``"@<address>"`` when ``raw`` may go by address, else ``None`` (it is copied)."""
        if raw.readonly or (self._misses >= _GIVE_UP_AFTER and not self._owners):
            return None
        if fork_count() != self._forks:
            return None
        address, nbytes = _address(raw), raw.nbytes
        with self._lock:
            at = bisect.bisect_right(self._starts, address)
            if at and self._ends[self._starts[at - 1]] > address:
                return None  # overlaps a range sent before
            if at < len(self._starts) and self._starts[at] < address + nbytes:
                return None
            if not _all(_top_bytes(address, nbytes), _SHARED_PAGE):
                self._misses += 1
                return None
            self._starts.insert(at, address)
            self._ends[address] = address + nbytes
            self._owners[address] = raw
        return f"{PREFIX}{address}"

    def resolve(self, address: int, nbytes: int) -> memoryview:
        """The buffer sent as ``address``, come back through the pipeline unchanged."""
        raw = self._owners[address]
        assert raw.nbytes == nbytes, "an address came back with another size"
        return raw


# -- in a worker ------------------------------------------------------------------------------

# A worker's own (one run per worker process): what it received by address.
_received: dict[int, int] = {}  # address -> size: ranges this worker got by address, not yet sent on
_worker_forks: int | None = None  # None: this process does not take addresses on


def enable_forwarding() -> None:
    """In a worker forked for a run that sends by address: forward what arrives unchanged."""
    global _worker_forks
    _worker_forks = fork_count()


def take(address: int, nbytes: int) -> memoryview:
    """In a worker: the buffer at ``address``, as this process inherited it from the caller.

    Not checked: a page may be absent here and read as zeros (the caller's was the shared
    zero page), and nothing but this worker writes here."""
    _received[address] = nbytes
    return memoryview((ctypes.c_char * nbytes).from_address(address)).cast("B")


def forward(raw: memoryview) -> str | None:
    """``"@<address>"`` when ``raw`` is a range this worker received by address and has not
    written since (nor forked), handed on once; else ``None``."""
    if _worker_forks is None or not _received or raw.readonly:
        return None
    address = _address(raw)
    if _received.get(address) != raw.nbytes:
        return None
    del _received[address]  # once: a second send of it is copied
    if fork_count() != _worker_forks or not _all(_top_bytes(address, raw.nbytes), _SHARED_PAGE):
        return None
    return f"{PREFIX}{address}"
