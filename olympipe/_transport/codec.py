"""Serialisation: one pickle per chunk per hop, dill for stage definitions.

Items travel as a pickled ``list`` (protocol 5), so the fixed cost of a pickle call is paid
once per chunk. Out-of-band buffers of at least :data:`~olympipe._transport.shm.THRESHOLD`
bytes (numpy arrays, bytearrays, memoryviews) go through shared memory, and so does a
pickle that is itself that large (PIL images, large ``bytes``); only their names travel in
the frame. Stage definitions (lambdas and closures included) travel once per worker with
``dill``. When a chunk will not pickle, :func:`describe_unpicklable` finds the item at fault
so the error can name its type instead of the engine's internals.

Classes defined in ``__main__`` (a script, a notebook cell) travel by value with the items
that use them: a worker that did not re-run the caller's script (see ``context``) has no
``__main__.Rec`` to find. On the receiving side a class of the same name in that process's
``__main__`` is used when there is one (the caller's own class, so ``isinstance`` and
``except`` work there), else the class is rebuilt once per process and registered in its
``__main__``.

Frame body, after the channel header::

    inline:  <pickle bytes>
    shared:  u16 n | n x (u64 size, u16 len, name) | u8 pickle_in_shm | [<pickle bytes>]
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import dill

from olympipe._transport import inherited, pool, shm, stock
from olympipe._transport.channel import (
    HEADER_SIZE,
    KIND_DATA,
    KIND_END,
    KIND_SHARED,
    Channel,
    pack_header,
    unpack_header,
)

PROTOCOL = 5
ByAddress = Callable[[memoryview], "str | None"]  # a buffer -> its "@<address>" name, or None
Resolve = Callable[[int, int], memoryview]  # (address, size) -> the buffer it names
Pooled = Callable[[str, int], Any]  # (slot name, size) -> the buffer the slot holds
WriteSlot = Callable[[memoryview], "str | None"]  # a buffer -> the name of a slot now holding it
_COUNT = struct.Struct("<H")
_SEGMENT = struct.Struct("<QH")


class EncodeError(Exception):
    """A value could not be pickled; ``type_name`` names its type."""

    def __init__(self, type_name: str, reason: str, item: object = None) -> None:
        super().__init__(f"cannot pickle a value of type {type_name}: {reason}")
        self.type_name = type_name
        self.reason = reason
        self.item = item


class DecodeError(Exception):
    """A chunk could not be unpickled by its consumer."""


@dataclass(frozen=True)
class Forwarded:
    """A large buffer that is already a segment (see ``shm.forward``), or that its consumer
    already holds (see ``inherited``): only its name travels."""

    name: str
    nbytes: int


@dataclass
class Encoded:
    """A pickled chunk: the in-band bytes and the large buffers kept out of band."""

    data: bytes
    buffers: list[memoryview | Forwarded] = field(default_factory=list)

    @property
    def shared(self) -> bool:
        """Whether the frame will carry shared-memory segments."""
        return bool(self.buffers) or len(self.data) >= shm.THRESHOLD


class _Pickler(pickle.Pickler):
    """``pickle`` with classes of ``__main__`` by value (the C pickler calls
    ``reducer_override`` only for objects that are not plain ints, strs, lists, ...)."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, type) and obj.__module__ == "__main__":
            return _main_class, (obj.__qualname__, _class_payload(obj))
        return NotImplemented


# Process-wide caches: a __main__ class is pickled once per process (the caller) and rebuilt
# once per process (a worker), whatever run sends it.
_payloads: dict[type, bytes] = {}
_rebuilt: dict[bytes, type] = {}


def _class_payload(cls: type) -> bytes:
    payload = _payloads.get(cls)
    if payload is None:
        payload = _payloads[cls] = dill.dumps(cls, protocol=PROTOCOL, recurse=True)
    return payload


def _main_class(qualname: str, payload: bytes) -> type:
    """The class a by-value ``__main__`` class stands for in this process."""
    main = sys.modules.get("__main__")
    found = getattr(main, qualname, None) if "." not in qualname else None
    if isinstance(found, type) and found.__qualname__ == qualname:
        return found
    cls = _rebuilt.get(payload)
    if cls is None:
        cls = _rebuilt[payload] = dill.loads(payload)
        if main is not None and "." not in qualname and not hasattr(main, qualname):
            setattr(main, qualname, cls)  # one class per name in this process
    return cls


def register_main_classes(definition: object) -> None:
    """Put the ``__main__`` classes a stage definition uses into this process's
    ``__main__``, so that items of those classes rebuild as the very same classes."""
    main = sys.modules.get("__main__")
    if main is None:
        return
    values = list(vars(definition).values()) if hasattr(definition, "__dict__") else []
    for value in values:
        if hasattr(value, "__dataclass_fields__") and not isinstance(value, type):
            register_main_classes(value)  # a wrapped spec
        candidates = [value]
        candidates += list(getattr(value, "__globals__", {}).values())
        for candidate in candidates:
            if _is_main_class(candidate) and not hasattr(main, candidate.__qualname__):
                setattr(main, candidate.__qualname__, candidate)


def _is_main_class(value: object) -> bool:
    """A class defined at the top level of ``__main__``."""
    return isinstance(value, type) and value.__module__ == "__main__" and "." not in value.__qualname__


def dumps(value: Any, buffer_callback: Any = None) -> bytes:
    """Pickle ``value`` (protocol 5, ``__main__`` classes by value)."""
    out = io.BytesIO()
    _Pickler(out, PROTOCOL, buffer_callback=buffer_callback).dump(value)
    return out.getvalue()


def encode_chunk(
    items: list[Any],
    use_shm: bool = True,
    forward: bool = False,
    by_address: ByAddress | None = None,
    slots: bool = False,
) -> Encoded:
    """Pickle a chunk of items; raise :class:`EncodeError` naming the culprit's type.

    ``forward``: a buffer that is exactly a segment this process received travels by name,
    without a copy (only for a chunk sent to a single consumer); ``slots``: so does one that
    is exactly a slot (see ``pool``). ``by_address``: gives the name of a buffer every
    consumer already holds (see ``inherited``), or ``None``."""
    buffers: list[memoryview | Forwarded] = []

    def keep_large_out_of_band(buf: pickle.PickleBuffer) -> bool:
        try:
            raw = buf.raw()
        except BufferError:  # not contiguous: pickle it in band
            return True
        if raw.nbytes < shm.THRESHOLD:
            return True
        name = pool.forward(raw) if slots else None
        if name is None and forward:
            name = shm.forward(raw)
        if name is None and by_address is not None:
            name = by_address(raw)
        buffers.append(raw if name is None else Forwarded(name, raw.nbytes))
        return False

    try:
        data = dumps(items, keep_large_out_of_band if use_shm else None)
    except Exception as exc:
        raise describe_unpicklable(items, exc) from exc
    return Encoded(data, buffers)


def frame_body(encoded: Encoded, prefix: str, write_slot: WriteSlot | None = None) -> bytes:
    """The body of a ``shared`` frame: writes the segments (into slots when ``write_slot``
    finds one, see ``pool``), returns their description.

    A buffer that /dev/shm has no room for (a container's 64 MB, filled by the results a
    caller keeps) travels in the body itself, after its description (a name of length 0):
    through the pipe, slower, but the run goes on."""
    # the pickle is read once, where it lands: a segment of its own, never a slot
    large_pickle = len(encoded.data) >= shm.THRESHOLD
    pickle_name = _write_segment(prefix, memoryview(encoded.data)) if large_pickle else None
    parts = [_COUNT.pack(len(encoded.buffers) + (pickle_name is not None))]
    if pickle_name is not None:
        _describe(parts, len(encoded.data), pickle_name, None)
    for segment in encoded.buffers:
        if isinstance(segment, Forwarded):
            _describe(parts, segment.nbytes, segment.name, None)
            continue
        name = write_slot(segment) if write_slot is not None else None
        _describe(parts, segment.nbytes, name or _write_segment(prefix, segment), segment)
    parts.append(b"\x01" if pickle_name is not None else b"\x00")
    if pickle_name is None:
        parts.append(encoded.data)
    return b"".join(parts)


def _write_segment(prefix: str, data: memoryview) -> str | None:
    """A new segment holding ``data``, or ``None`` when /dev/shm has no room for it."""
    try:
        return shm.write_segment(prefix, data, stock.take(prefix, data.nbytes))
    except OSError as exc:
        if shm.no_room(exc):
            return None
        raise


def _describe(parts: list[Any], nbytes: int, name: str | None, data: memoryview | None) -> None:
    encoded_name = name.encode() if name is not None else b""
    parts.append(_SEGMENT.pack(nbytes, len(encoded_name)))
    parts.append(encoded_name if name is not None else data)


def decode_chunk(payload: memoryview) -> list[Any]:
    """Unpickle an inline chunk; raise :class:`DecodeError` when that fails."""
    try:
        items: list[Any] = pickle.loads(payload)
    except Exception as exc:
        raise DecodeError(f"{type(exc).__name__}: {exc}") from exc
    return items


def _segments(body: memoryview) -> tuple[list[tuple[str, int]], list[memoryview], int]:
    """The segments a shared frame's body names, the buffers it carries itself (a name of
    length 0, in order), and where the rest of the body starts."""
    (count,) = _COUNT.unpack_from(body, 0)
    offset = _COUNT.size
    segments = []
    carried = []
    for _ in range(count):
        size, length = _SEGMENT.unpack_from(body, offset)
        offset += _SEGMENT.size
        if length:
            segments.append((bytes(body[offset : offset + length]).decode(), size))
            offset += length
        else:
            segments.append(("", size))
            carried.append(body[offset : offset + size])
            offset += size
    return segments, carried, offset


def frame_segments(frame: bytes) -> list[str]:
    """The names of the shared-memory segments a frame carries (none for an inline one)."""
    kind, _port, _seq = unpack_header(frame)
    if kind != KIND_SHARED:
        return []
    segments = _segments(memoryview(frame)[HEADER_SIZE:])[0]
    return [name for name, _size in segments if name and not name.startswith((inherited.PREFIX, pool.PREFIX))]


def decode_shared(
    body: memoryview,
    keep: bool = False,
    private: bool = False,
    resolve: Resolve | None = None,
    pooled: Pooled | None = None,
) -> list[Any]:
    """Unpickle a chunk whose large parts are in shared memory: mapped, and unlinked at once
    or (``keep``, in a worker) when no longer used, so that they can be forwarded;
    ``private``: mapped copy-on-write, so that the segment keeps what was sent.
    ``resolve`` gives the buffers sent by address, ``pooled`` those sent in slots."""
    segments, carried, offset = _segments(body)
    pickle_in_shm = body[offset] == 1
    in_body = iter(carried)
    views: list[Any] = [
        bytearray(next(in_body))  # the frame's bytes are read-only: the item's own, writable copy
        if not name
        else _by_address(name, size, resolve)
        if name.startswith(inherited.PREFIX)
        else _in_slot(name, size, pooled)
        if name.startswith(pool.PREFIX)
        # the pickle itself (segment 0 when it is in shared memory) is never forwarded
        else shm.take_segment(name, size, keep=keep and not (pickle_in_shm and index == 0), private=private)
        for index, (name, size) in enumerate(segments)
    ]
    data = views.pop(0) if pickle_in_shm else body[offset + 1 :]
    try:
        items: list[Any] = pickle.loads(data, buffers=views)
    except Exception as exc:
        raise DecodeError(f"{type(exc).__name__}: {exc}") from exc
    return items


def _by_address(name: str, size: int, resolve: Resolve | None) -> memoryview:
    if resolve is None:
        raise DecodeError(f"a buffer came by address ({name}) where none can be")
    try:
        return resolve(int(name[len(inherited.PREFIX) :]), size)
    except (KeyError, ValueError, AssertionError) as exc:
        raise DecodeError(f"the buffer sent as {name} cannot be found: {exc}") from exc


def _in_slot(name: str, size: int, pooled: Pooled | None) -> Any:
    if pooled is None:
        raise DecodeError(f"a buffer came in a slot ({name}) where none can be")
    return pooled(name, size)


def send_encoded(
    channel: Channel,
    port: int,
    seq: int,
    encoded: Encoded,
    prefix: str | None,
    write_slot: WriteSlot | None = None,
    born: float = 0.0,
    upto: int = 0,
) -> float:
    """Write one chunk to ``channel``: inline, or through shared memory when it is large.
    Returns the seconds spent writing shared memory (work, not waiting on the channel).
    ``born`` and ``upto``: see :func:`~olympipe._transport.channel.marks_of`."""
    if prefix is not None and encoded.shared:
        channel.acquire_shm_slot()
        t0 = time.perf_counter()
        body = frame_body(encoded, prefix, write_slot)
        written = time.perf_counter() - t0
        channel.send(pack_header(port, seq, KIND_SHARED, born, upto) + body)
        return written
    channel.send(pack_header(port, seq, KIND_DATA, born, upto) + encoded.data)
    return 0.0


def decode_frame(
    channel: Channel | None,
    frame: bytes,
    keep: bool = False,
    private: bool = False,
    resolve: Resolve | None = None,
    pooled: Pooled | None = None,
) -> tuple[int, int, int, list[Any]]:
    """``(kind, port, seq, items)`` of a frame read from ``channel`` (items empty for END);
    ``keep``, ``private``, ``resolve`` and ``pooled``: see :func:`decode_shared`. ``channel`` ``None``: a
    frame read again (a held chunk), whose shared-memory slot was given back when it was
    first read."""
    kind, port, seq = unpack_header(frame)
    if kind == KIND_END:
        return kind, port, seq, []
    body = memoryview(frame)[HEADER_SIZE:]
    if kind == KIND_SHARED:
        try:
            return kind, port, seq, decode_shared(body, keep, private, resolve, pooled)
        finally:
            if channel is not None:
                channel.release_shm_slot()
    return kind, port, seq, decode_chunk(body)


def describe_unpicklable(items: list[Any], exc: Exception) -> EncodeError:
    """Find the first item of ``items`` that does not pickle and describe it."""
    for item in items:
        try:
            dumps(item)
        except Exception as item_exc:
            return EncodeError(_type_name(item), f"{type(item_exc).__name__}: {item_exc}", item)
    return EncodeError("list", f"{type(exc).__name__}: {exc}")


def _type_name(value: object) -> str:
    cls = type(value)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


class _DefinitionPickler(dill.Pickler):  # type: ignore[misc]
    """dill, except that numpy arrays take protocol 5's out-of-band path (dill registers a
    reducer of its own for them, which copies their bytes into the pickle)."""

    # A table of its own: the ndarray entry dill adds to its table at first use stays out.
    dispatch: ClassVar[dict[type, Any]] = dict(dill.Pickler.dispatch)

    def save(self, obj: Any, save_persistent_id: bool = True) -> None:
        kind = type(obj)
        if kind.__name__ == "ndarray" and kind.__module__ == "numpy":
            pickle._Pickler.save(self, obj, save_persistent_id)  # type: ignore[attr-defined]
        else:
            super().save(obj, save_persistent_id)


@dataclass(frozen=True)
class Definition:
    """A stage definition for a worker that was not forked from the caller: the dill
    pickle, and the shared-memory segments that hold its large buffers (an array a stage
    function reads from a global, model weights in a closure)."""

    data: bytes
    segments: tuple[tuple[str, int], ...] = ()


def dumps_definition(obj: object, prefix: str | None = None) -> Definition:
    """Serialise a stage definition (functions, lambdas, closures) for another process.

    With ``prefix``, buffers of :data:`~olympipe._transport.shm.THRESHOLD` bytes or more are
    written once to shared memory, and every worker maps them copy-on-write: as under
    fork, a 200 MB global costs neither 200 MB per worker nor the time to pickle it."""
    buffers: list[memoryview] = []

    def out_of_band(buf: pickle.PickleBuffer) -> bool:
        if prefix is None:
            return True
        try:
            raw = buf.raw()
        except BufferError:  # not contiguous
            return True
        if raw.nbytes < shm.THRESHOLD:
            return True
        buffers.append(raw)
        return False

    out = io.BytesIO()
    _DefinitionPickler(out, PROTOCOL, recurse=True, buffer_callback=out_of_band).dump(obj)
    data = out.getvalue()
    if not buffers:
        return Definition(data)
    assert prefix is not None
    names = [_write_segment(prefix, b) for b in buffers]
    written = [name for name in names if name is not None]
    if len(written) < len(names):  # /dev/shm has no room: the buffers go in the pickle
        for name in written:
            os.unlink(os.path.join(shm.SHM_DIR, name))
        return dumps_definition(obj)
    return Definition(data, tuple(zip(written, [b.nbytes for b in buffers], strict=True)))


def loads_definition(definition: Definition) -> Any:
    """The inverse of :func:`dumps_definition` (the segments stay: other workers map them
    too; the run removes them when it ends)."""
    views = [shm.map_private(name, size) for name, size in definition.segments]
    return dill.loads(definition.data, buffers=views)
