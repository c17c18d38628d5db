"""A bounded many-producer, many-consumer channel of byte frames over one OS pipe.

Why a pipe and not ``multiprocessing.Queue``: a queue adds a feeder thread per producer and
an unbounded in-process buffer in front of the pipe, so its ``maxsize`` bounds items, not
bytes. A bare pipe is bounded in bytes by the kernel (we ask for a larger buffer), a blocked
writer simply sleeps in ``write(2)``, and a reader can be waited on by
``multiprocessing.connection.wait`` next to process sentinels.

Several producers share the write end under a lock, because frames larger than
``PIPE_BUF`` are not written atomically; several consumers share the read end under
another lock. End of stream is in-band: each producer calls :meth:`Channel.producer_done`
after its last frame; the last one to do so writes one END frame per consumer, and each
consumer stops at the first END it reads. Since every producer's frames were written before
it counted itself out, no data frame can follow an END.
"""

from __future__ import annotations

import contextlib
import fcntl
import struct
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.synchronize import Lock, Semaphore
from typing import Any

# struct layout of a frame header: kind, input port, sequence number, when the oldest
# source item in the chunk was read (``time.monotonic()``, one clock for every process of
# the machine; 0: unknown), for the run's latency figures, and ``upto``: once this frame and
# every earlier one of its stream are in, each source item before that position has sent
# all it produced on this stream (``resume=`` records it).
_HEADER = struct.Struct("<BHqdq")
HEADER_SIZE = _HEADER.size
KIND_DATA = 0  # the body is the pickled chunk
KIND_END = 1  # end of stream from the last producer
KIND_SHARED = 2  # the body names shared-memory segments (see codec.frame_body)
END_FRAME = _HEADER.pack(KIND_END, 0, -1, 0.0, 0)
SHM_SLOTS = 8  # frames with shared-memory segments in flight per channel

_F_SETPIPE_SZ = 1031  # Linux fcntl: resize a pipe's kernel buffer
PIPE_BYTES = 1 << 20  # the kernel caps it at /proc/sys/fs/pipe-max-size (1 MiB by default)


def pack_header(port: int, seq: int, kind: int = KIND_DATA, born: float = 0.0, upto: int = 0) -> bytes:
    """The header of a data frame for input ``port`` carrying chunk number ``seq``, whose
    oldest source item was read at ``born``, and which completes source items before ``upto``."""
    return _HEADER.pack(kind, port, seq, born, upto)


def unpack_header(frame: bytes) -> tuple[int, int, int]:
    """``(kind, port, seq)`` of a frame."""
    kind, port, seq, _born, _upto = _HEADER.unpack_from(frame)
    return kind, port, seq


def marks_of(frame: bytes) -> tuple[float, int]:
    """``(born, upto)`` of a frame (see the header's layout)."""
    _kind, _port, _seq, born, upto = _HEADER.unpack_from(frame)
    return born, upto


class Channel:
    """The inbox of one stage (or of the caller, for a sink): bounded, in-order per producer."""

    def __init__(self, ctx: BaseContext, producers: int, consumers: int) -> None:
        if producers < 1 or consumers < 1:
            raise ValueError("a channel needs at least one producer and one consumer")
        self.producers = producers
        self.consumers = consumers
        self._reader, self._writer = ctx.Pipe(duplex=False)
        try:
            fcntl.fcntl(self._writer.fileno(), _F_SETPIPE_SZ, PIPE_BYTES)
        except OSError:  # pragma: no cover - older kernels: keep the default 64 KiB
            pass
        self._rlock: Lock | None = ctx.Lock() if consumers > 1 else None
        self._wlock: Lock | None = ctx.Lock() if producers > 1 else None
        self._remaining: Any = ctx.RawValue("i", producers)
        # Bounds the shared memory in flight: pipe capacity alone would let thousands of
        # small frames each name megabytes of segments.
        self._slots: Semaphore = ctx.Semaphore(SHM_SLOTS)

    def __getstate__(self) -> dict[str, Any]:
        # A replacement worker is started after the caller dropped the ends it does not
        # need; what it needs (its inbox's reader, its outputs' writers) is still open.
        state = dict(self.__dict__)
        for end in ("_reader", "_writer"):
            if state[end].closed:
                state[end] = None
        return state

    @property
    def reader(self) -> Connection:
        """The read end, for ``multiprocessing.connection.wait``."""
        return self._reader

    def send(self, frame: bytes) -> None:
        """Write one frame; blocks while the pipe is full (backpressure)."""
        if self._wlock is None:
            self._writer.send_bytes(frame)
        else:
            with self._wlock:
                self._writer.send_bytes(frame)

    def recv(self) -> bytes:
        """Read one frame; blocks until one is there."""
        if self._rlock is None:
            return self._reader.recv_bytes()
        with self._rlock:
            return self._reader.recv_bytes()

    def poll(self, timeout: float | None) -> bool:
        """Whether a frame can be read within ``timeout`` seconds (single-consumer channels)."""
        return self._reader.poll(timeout)

    def acquire_shm_slot(self) -> None:
        """Wait for room for one more shared-memory frame (producer side)."""
        self._slots.acquire()

    def release_shm_slot(self) -> None:
        """A shared-memory frame has been taken (consumer side)."""
        self._slots.release()

    def unblock_producers(self) -> None:
        """Teardown: wake any producer of this process waiting for a slot."""
        for _ in range(SHM_SLOTS + 1):  # more than anyone can be waiting for
            self._slots.release()

    def producer_done(self) -> None:
        """Count one producer out; the last one writes one END frame per consumer."""
        with self._wlock if self._wlock is not None else contextlib.nullcontext():
            self._remaining.value -= 1
            if self._remaining.value == 0:
                for _ in range(self.consumers):
                    self._writer.send_bytes(END_FRAME)

    def producer_added(self) -> bool:
        """Count one more producer in (a worker started during the run); ``False``, and no
        change, when the last producer has already counted out (END is written)."""
        with self._wlock if self._wlock is not None else contextlib.nullcontext():
            if self._remaining.value <= 0:
                return False
            self._remaining.value += 1
            return True

    def close_reader(self) -> None:
        """Close this process's copy of the read end."""
        self._reader.close()

    def close_writer(self) -> None:
        """Close this process's copy of the write end."""
        self._writer.close()

    def close(self) -> None:
        """Close both ends in this process."""
        self._reader.close()
        self._writer.close()
