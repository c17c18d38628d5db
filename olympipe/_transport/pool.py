"""Slots: shared-memory files the caller's large buffers travel in, used again and again.

What a large buffer costs on its way through the stages is mostly not its copy but fresh
memory. A new segment per item means new pages (allocated and zeroed by the kernel) and, in
every stage, a new mapping: page faults to map the pages in and an ``munmap`` to take them
out, about 0.5 ms per 4 MiB per stage against 0.15 ms for the stage's own ``a += 1``. A slot
carries one buffer at a time and is used again once every process that held it has let go
of it; each process maps it once and keeps the mapping for the run, so a later buffer in it
costs one copy into pages that are already there and already mapped.

Who lets go, and how the caller knows:

* the caller's feeder writes a buffer into a free slot; the frame names it
  ``%<slot>.<hops>.<file>``, ``hops`` counting the workers that passed it on so far;
* a worker that receives it builds the item on an object of its own over the slot (the
  *exporter*); when the stage returns the buffer as it came (or changed in place) to a single
  consumer, the worker passes the slot on with ``hops + 1`` and, once its exporter is gone,
  writes *let go* on the run's FIFO;
* the last holder ends the slot's trip: a worker whose exporter goes without passing it on
  writes *ended after ``hops``*; the caller, when a result comes in a slot, lends it to the
  result (an exporter of its own) and ends the trip when that exporter goes;
* the slot is free again when its trip has ended and ``hops`` holders have let go.

The caller lends slots only while it holds few results in them (:meth:`Pool.receive`): one
that drops each result soon, as a consumer feeding a model does, gets them all without a
copy, and its slots come back. One that keeps every result would take a slot for good per
result; a byte the workers read (:func:`caller_lends`) then tells the last stage to copy its
results into segments of their own, and the slots keep going round between the stages.

A stage that keeps an array after returning it keeps its exporter alive: that slot is not
used again while it does, so nothing a stage holds ever changes under it. A slot whose
holder died, or whose let-go did not fit in the FIFO, is simply never used again. When no
slot is free and the slots already take :func:`budget` bytes, a buffer goes into a segment
of its own as before: the slots never wait, and never take more than the budget.
"""

from __future__ import annotations

import collections
import ctypes
import fcntl
import mmap
import os
import struct
import threading
import weakref
from dataclasses import dataclass
from typing import Any

from olympipe._transport import shm

PREFIX = "%"  # a frame's segment name that is a slot
_MESSAGE = struct.Struct("<Ii")  # slot, hops of an ended trip or _LET_GO
_LET_GO = -1
_FIFO_BYTES = 1 << 20  # room for the let-go messages of every slot many times over
_MAX_SLOTS = 4096
_LEND_SLOTS = 8  # results the caller may hold in slots at once
_LEND_SHARE = 1 / 4  # and the budget they may take
# A slot is mapped once per process and filled whole, again and again: its page tables
# are filled at once rather than fault by fault (a few per cent on 4 MiB items).
_MAP_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)


def budget() -> int:
    """Bytes the slots of one run may take: ``OLYMPIPE_POOL_BYTES`` (0: no slots), else a
    sixteenth of the machine's memory, at most 1 GiB, and at most a quarter of /dev/shm
    (a container's is often 64 MB: the rest is for the results the caller keeps)."""
    told = os.environ.get("OLYMPIPE_POOL_BYTES", "").strip()
    if told:
        try:
            return max(0, int(told))
        except ValueError:
            pass
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        room = os.statvfs(shm.SHM_DIR)
    except (ValueError, OSError):
        return 0
    return int(min(1 << 30, memory // 16, room.f_frsize * room.f_blocks // 4))


def _capacity(nbytes: int) -> int:
    """Slots come in powers of two: a freed slot fits the next buffer of about its size."""
    return int(max(shm.THRESHOLD, 1 << (nbytes - 1).bit_length()))


def _copy_out(view: memoryview) -> bytearray:
    """A result's own copy of a slot's buffer, in the caller's memory."""
    return bytearray(view)


def _name(index: int, hops: int, filename: str) -> str:
    return f"{PREFIX}{index}.{hops}.{filename}"


def _parse(name: str) -> tuple[int, int, str]:
    index, hops, filename = name[len(PREFIX) :].split(".", 2)
    return int(index), int(hops), filename


def _fifo_path(prefix: str) -> str:
    return os.path.join(shm.SHM_DIR, f"{prefix}-pool")


def _lends_path(prefix: str) -> str:
    return os.path.join(shm.SHM_DIR, f"{prefix}-pool-lends")


@dataclass
class _Slot:
    index: int
    capacity: int
    mapping: ctypes.Array[ctypes.c_char]
    view: memoryview
    ended_after: int | None = None  # the trip ended: holders that passed it on
    let_go: int = 0  # of those, how many have let go


class Pool:
    """The caller's slots for one run: the feeders write into them, the sink lends results
    in them, and the workers' let-go messages come back on a FIFO."""

    def __init__(self, prefix: str, max_bytes: int) -> None:
        """Raises :class:`OSError` when /dev/shm has no room for the pool's own files (the run
        removes what was made)."""
        self._prefix = prefix
        self._max_bytes = max_bytes
        self._bytes = 0
        self._slots: list[_Slot] = []
        self._free: dict[int, list[int]] = {}  # capacity -> free slots, the last freed last
        self._lock = threading.Lock()  # feeder threads take slots, the sink gives them back
        self._lent = 0  # slots the caller holds results in
        self._lent_bytes = 0
        self._returned: collections.deque[tuple[int, int]] = collections.deque()  # let go by the caller
        fifo = _fifo_path(prefix)
        os.mkfifo(fifo, 0o600)
        # Read and write: the FIFO stays open for the workers whatever the caller does.
        self._returns = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
        try:
            fcntl.fcntl(self._returns, fcntl.F_SETPIPE_SZ, _FIFO_BYTES)
        except OSError:  # a lower limit for unprivileged users: the default size then
            pass
        # One byte the workers read: 1 while the caller takes results in slots. Its page is
        # reserved first: writing to a mapping on a full /dev/shm is a SIGBUS, not an error.
        try:
            fd = os.open(_lends_path(prefix), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
            try:
                os.posix_fallocate(fd, 0, 1)
                self._lends = mmap.mmap(fd, 1)
            finally:
                os.close(fd)
        except OSError:
            os.close(self._returns)
            raise
        self._lends[0] = 1
        self._closed = False

    def write(self, data: memoryview) -> str | None:
        """Copy ``data`` into a free slot and return its name for the frame; ``None`` when no
        slot is free and the budget allows no new one."""
        nbytes = data.nbytes
        capacity = _capacity(nbytes)
        with self._lock:
            if self._closed:
                return None
            self._read_returns()
            self._take_back_returned()
            source = shm.as_bytes(data)
            slot = self._free_slot(capacity)
            if slot is None and self._bytes + capacity <= self._max_bytes and len(self._slots) < _MAX_SLOTS:
                slot = self._new_slot(capacity, source)
                if slot is not None:
                    return _name(slot.index, 0, self._filename(slot.index))
            if slot is None:
                return None
        slot.view[:nbytes] = source
        return _name(slot.index, 0, self._filename(slot.index))

    def receive(self, name: str, size: int) -> Any:
        """Caller side: a result in a slot, lent as it is (an object of its own over the slot,
        whose end gives the slot back).

        A caller that drops each result soon holds few at a time and gets every one of them
        this way, without a copy. One that keeps them (``wait_for_result``) would keep taking
        slots for good, and the feeders would fill new slots that every stage maps anew: past
        :data:`_LEND_SLOTS` results held, or :data:`_LEND_SHARE` of the budget, the caller
        tells the workers to copy results into segments of their own instead, as they do when
        there are no slots (see :func:`caller_lends`); one already on its way is copied out
        here (:func:`_copy_out`) and its slot's trip ended at once."""
        index, hops, _filename = _parse(name)
        slot = self._slots[index]
        with self._lock:
            if not self._closed:
                self._take_back_returned()
            lend = not self._closed and self._may_lend(slot.capacity)
            if lend:
                self._lent += 1
                self._lent_bytes += slot.capacity
                self._tell_lending()
        if lend:
            exporter = (ctypes.c_char * size).from_buffer(slot.mapping)
            # deque.append: atomic, and takes no lock a finalizer could find held
            weakref.finalize(exporter, self._returned.append, (index, hops))
            return exporter
        copied = _copy_out(slot.view[:size])
        with self._lock:
            self._end(slot, hops)
        return copied

    def close(self) -> None:
        """Let go of every slot: each is unmapped at once, or once no result the caller holds
        is in it (the run removes their files)."""
        with self._lock:
            self._closed = True
            os.close(self._returns)
            self._lends.close()
            for slot in self._slots:
                slot.view.release()
            self._slots, self._free = [], {}

    def _free_slot(self, capacity: int) -> _Slot | None:
        # A slot up to four times too large will do: items whose sizes vary a little
        # reuse slots rather than spend the budget on one set of slots per size.
        for fits in (capacity, capacity * 2, capacity * 4):
            free = self._free.get(fits)
            if free:
                return self._slots[free.pop()]
        return None

    def _filename(self, index: int) -> str:
        return f"{self._prefix}-pool-{index}"

    def _file(self, index: int) -> str:
        return os.path.join(shm.SHM_DIR, self._filename(index))

    def _new_slot(self, capacity: int, first: memoryview) -> _Slot | None:
        """A new slot holding ``first``."""
        index = len(self._slots)
        try:
            fd = os.open(self._file(index), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        except OSError:
            return None
        try:
            # Written before it is mapped: a write fills new pages without zeroing them first,
            # where a mapping's first touch zeroes each. The rest reserved now: writing to a
            # mapping of a full /dev/shm is a SIGBUS, not an error. Full: no slot, the buffer
            # takes the usual path (and its error).
            shm.write_all(fd, first)
            os.posix_fallocate(fd, 0, capacity)
            mapping = shm.map_file(fd, capacity, _MAP_FLAGS)
        except OSError:
            os.close(fd)
            os.unlink(self._file(index))
            return None
        os.close(fd)
        slot = _Slot(index, capacity, mapping, memoryview(mapping).cast("B"))
        self._slots.append(slot)
        self._bytes += capacity
        return slot

    def _read_returns(self) -> None:
        while True:
            try:
                data = os.read(self._returns, _FIFO_BYTES)
            except BlockingIOError:
                return
            for index, hops in _MESSAGE.iter_unpack(data):  # writes of one message are atomic
                if index >= len(self._slots):
                    continue
                slot = self._slots[index]
                if hops == _LET_GO:
                    slot.let_go += 1
                    self._free_if_done(slot)
                else:
                    self._end(slot, hops)

    def _may_lend(self, capacity: int) -> bool:
        return self._lent < _LEND_SLOTS and self._lent_bytes + capacity <= self._max_bytes * _LEND_SHARE

    def _tell_lending(self) -> None:
        self._lends[0] = self._may_lend(0)

    def _take_back_returned(self) -> None:
        if not self._returned:
            return
        while self._returned:
            index, hops = self._returned.popleft()
            slot = self._slots[index]
            self._lent -= 1
            self._lent_bytes -= slot.capacity
            self._end(slot, hops)
        self._tell_lending()

    def _end(self, slot: _Slot, hops: int) -> None:
        slot.ended_after = hops
        self._free_if_done(slot)

    def _free_if_done(self, slot: _Slot) -> None:
        if slot.ended_after is not None and slot.let_go >= slot.ended_after:
            slot.ended_after, slot.let_go = None, 0
            self._free.setdefault(slot.capacity, []).append(slot.index)


# -- the workers' side ------------------------------------------------------------------------


@dataclass
class _Held:
    index: int
    hops: int
    filename: str
    size: int
    exporter: weakref.ref[Any]
    ended: weakref.finalize[..., Any]


# Process-wide: a slot's mapping, and what holds it, belong to the process that mapped it
# (the caller or a worker), and a result lent in a slot may outlive the run that made it.
_mapped: dict[str, ctypes.Array[ctypes.c_char]] = {}  # slot file -> this process's mapping of it, for the run
_held: dict[int, _Held] = {}  # address of a slot's exporter -> what this process holds there
_fifos: dict[str, int] = {}  # FIFO path -> this process's write end (-1: none)
_lends: dict[str, mmap.mmap | None] = {}  # run prefix -> the caller's lending byte


def caller_lends(prefix: str | None) -> bool:
    """Worker side: whether a slot this process holds may go on to the caller as a result
    (see :meth:`Pool.receive`)."""
    if not _held or prefix is None:
        return False  # no slot to pass on
    if prefix not in _lends:
        try:
            fd = os.open(_lends_path(prefix), os.O_RDONLY)
        except OSError:  # the run is over
            _lends[prefix] = None
        else:
            try:
                _lends[prefix] = mmap.mmap(fd, 1, prot=mmap.PROT_READ)
            finally:
                os.close(fd)
    lends = _lends[prefix]
    return lends is not None and lends[0] == 1


def take(name: str, size: int) -> Any:
    """Worker side: the buffer slot ``name`` holds, as an object of its own whose end tells
    the caller this process let go of it."""
    index, hops, filename = _parse(name)
    mapping = _mapped.get(filename)
    if mapping is None:
        fd = os.open(os.path.join(shm.SHM_DIR, filename), os.O_RDWR)
        try:
            mapping = _mapped[filename] = shm.map_file(fd, os.fstat(fd).st_size, _MAP_FLAGS)
        finally:
            os.close(fd)
    exporter = (ctypes.c_char * size).from_buffer(mapping)
    address = ctypes.addressof(exporter)
    fifo = _fifo(filename)
    ended = weakref.finalize(exporter, _tell, fifo, os.getpid(), index, hops, address)
    _held[address] = _Held(index, hops, filename, size, weakref.ref(exporter), ended)
    return exporter


def forward(buffer: memoryview) -> str | None:
    """The name that passes on the slot ``buffer`` is exactly, or ``None`` when it is not
    one this process holds."""
    if not _held:
        return None
    address = shm.buffer_address(buffer)
    held = _held.get(address) if address is not None else None
    if held is None or held.size != buffer.nbytes:
        return None
    exporter = held.exporter()
    if exporter is None:
        return None
    del _held[address]  # type: ignore[arg-type]
    held.ended.detach()
    weakref.finalize(exporter, _tell, _fifo(held.filename), os.getpid(), held.index, _LET_GO, None)
    return _name(held.index, held.hops + 1, held.filename)


def _fifo(filename: str) -> int:
    path = os.path.join(shm.SHM_DIR, filename.rsplit("-", 1)[0])
    fd = _fifos.get(path)
    if fd is None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # the run is over
            fd = -1
        _fifos[path] = fd
    return fd


def _tell(fifo: int, pid: int, index: int, hops: int, address: int | None) -> None:
    """A finalizer: may run at any point of the worker, so it takes no lock."""
    if os.getpid() != pid:  # a process a stage forked: the slot is its parent's business
        return
    if address is not None:
        _held.pop(address, None)
    if fifo >= 0:
        try:
            os.write(fifo, _MESSAGE.pack(index, hops))
        except OSError:  # full, or the run is over: the slot is not used again
            pass
