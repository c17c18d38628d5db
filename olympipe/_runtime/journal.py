"""What a replaceable worker holds, kept where its replacement can find it.

A worker of a stage that survives crashes (``on_error``, a server, ``max_items_per_worker``)
writes every frame it reads into a *held* file before it decodes it, and removes the file
once the chunk's output is sent. The file starts with a mark that says how far the chunk
got::

    BUFFERED     read, waiting for an earlier chunk (or for a replacement, at retirement)
    PROCESSING   the stage is working on the whole chunk
    SENDING      the output is being written: a death now is not recoverable
    running(i)     item ``i`` is running alone in a replacement, or the supervisor found
                   that the dead worker was running it (a stage that tracks its items)
    recovering(i)  a replacement is handing item ``i`` to ``on_error``

(non-negative numbers that only this module reads: :func:`item_of`, :func:`recoverable`).

So when a worker dies, the supervisor reads the marks to decide whether the death is one
item's failure (a chunk was ``PROCESSING`` or probing an item) or not (it died while
sending, while reading, in ``on_error`` itself, or in its constructor), and the replacement
reads the same files to take over: a chunk that was being processed is re-run item by item,
each item marked first, so that the next death names the item that kills the worker.
Items found that way are listed in a ``.dead`` side file with the exit code they caused.

Shared-memory segments a frame names are hard-linked next to the held file before the
worker maps them (and the worker maps them copy-on-write), so the replacement reads the
very bytes the dead worker received. Every file lives under the run's prefix and goes when
the run ends, whatever happened.

A held file that does not fit in ``/dev/shm`` (nearly full: a container's 64 MB, or
results the caller keeps) is *spilled*: written under the same name in the temporary
directory instead (:func:`spill_directory`), where the supervisor, a replacement and the
janitor look too. Its segment links stay beside the segments (a link takes no room).
"""

from __future__ import annotations

import glob
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from olympipe._transport import shm

BUFFERED = -1
PROCESSING = -2
SENDING = -3

_MARK = struct.Struct("<q")
_DEAD = struct.Struct("<qq")  # item index, exit code of the death it caused
_NO_EXITCODE = -(1 << 62)


def running(item: int) -> int:
    """The mark of item ``item`` running alone."""
    return 2 * item


def recovering(item: int) -> int:
    """The mark of item ``item`` being handed to ``on_error``."""
    return 2 * item + 1


def item_of(mark: int) -> int | None:
    """The item a mark names, or ``None`` (a whole chunk's mark)."""
    return mark // 2 if mark >= 0 else None


def directory() -> str:
    """Where held files go: beside the shared-memory segments (hard links need one file
    system), else the temporary directory."""
    if shm.available():
        return shm.SHM_DIR
    import tempfile

    return tempfile.gettempdir()


def spill_directory() -> str:
    """Where a held file goes when ``directory()`` has no room for it."""
    import tempfile

    return tempfile.gettempdir()


def _spilled(path: str) -> str:
    return os.path.join(spill_directory(), os.path.basename(path))


class Held:
    """One held chunk: its file, kept open to move its mark."""

    __slots__ = ("_fd", "dead", "links", "path")

    def __init__(self, path: str, fd: int, links: list[str], dead: bool = False) -> None:
        self.path = path
        self._fd = fd
        self.links = links
        self.dead = dead  # a side file of culprits exists

    def mark(self, value: int) -> None:
        """Record how far the chunk got (see the module's table)."""
        os.pwrite(self._fd, _MARK.pack(value), 0)

    def running(self, index: int) -> None:
        """Item ``index`` runs alone now (a chunk re-run item by item: an ``ItemProbe``)."""
        self.mark(running(index))

    def recovering(self, index: int) -> None:
        """Item ``index`` is handed to ``on_error`` now."""
        self.mark(recovering(index))

    def note_culprit(self, item: int, exitcode: int | None) -> None:
        """Item ``item`` killed a worker: a replacement must not run it again."""
        with open(self.path + ".dead", "ab") as side:
            side.write(_DEAD.pack(item, _NO_EXITCODE if exitcode is None else exitcode))
        self.dead = True

    def release(self) -> None:
        """The chunk's output is sent: forget it."""
        os.close(self._fd)
        for path in (self.path, *self.links, *((self.path + ".dead",) if self.dead else ())):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


@dataclass
class Recovered:
    """A chunk a dead (or retired) predecessor held."""

    port: int
    seq: int
    mark: int
    frame: bytes
    held: Held
    culprits: dict[int, int | None] = field(default_factory=dict)  # item -> exit code


class Journal:
    """The held files of one worker slot (a replacement takes over its predecessor's)."""

    def __init__(self, stem: str, worker: int) -> None:
        self._stem = f"{stem}-{worker}"

    def hold(self, port: int, seq: int, frame: bytes, segments: list[str]) -> Held:
        """Write a frame just read (and link the segments it names) before decoding it."""
        path = f"{self._stem}-{port}-{seq}"
        links = []
        for k, name in enumerate(segments):
            link = f"{path}.s{k}"
            os.link(os.path.join(shm.SHM_DIR, name), link)
            links.append(link)
        data = _MARK.pack(BUFFERED) + frame
        try:
            return Held(path, _write_new(path, data), links)
        except OSError as exc:
            if not shm.no_room(exc):
                raise
        spilled = _spilled(path)
        return Held(spilled, _write_new(spilled, data), links)

    def recover(self) -> list[Recovered]:
        """Every chunk the predecessor held, in ``(port, seq)`` order; the segments they
        name are linked back under their own names, ready to be decoded again."""
        found = []
        for path, port, seq in self._held_paths():
            with open(path, "rb") as f:
                data = f.read()
            (mark,) = _MARK.unpack_from(data, 0)
            beside = f"{self._stem}-{port}-{seq}"  # the links stay in /dev/shm, also when spilled
            links = sorted(glob.glob(glob.escape(beside) + ".s*"), key=lambda p: int(p.rsplit(".s", 1)[1]))
            culprits = _culprits(path + ".dead")
            held = Held(path, os.open(path, os.O_WRONLY), links, dead=bool(culprits))
            found.append(Recovered(port, seq, mark, data[_MARK.size :], held, culprits))
        return sorted(found, key=lambda r: (r.port, r.seq))

    def marks(self) -> list[tuple[int, int, int]]:
        """``(port, seq, mark)`` of every held chunk (supervisor side)."""
        out = []
        for path, port, seq in self._held_paths():
            try:
                with open(path, "rb") as f:
                    data = f.read(_MARK.size)
            except FileNotFoundError:
                continue
            if len(data) == _MARK.size:
                out.append((port, seq, _MARK.unpack(data)[0]))
        return sorted(out)

    def remark(self, port: int, seq: int, mark: int) -> None:
        """Move the mark of a held chunk (supervisor side: its worker is dead)."""
        path = f"{self._stem}-{port}-{seq}"
        try:
            fd = os.open(path, os.O_WRONLY)
        except FileNotFoundError:
            fd = os.open(_spilled(path), os.O_WRONLY)
        try:
            os.pwrite(fd, _MARK.pack(mark), 0)
        finally:
            os.close(fd)

    def _held_paths(self) -> Iterator[tuple[str, int, int]]:
        for stem in (self._stem, _spilled(self._stem)):
            for path in glob.glob(glob.escape(stem) + "-*"):
                tail = path[len(stem) + 1 :]
                if "." in tail:
                    continue  # a linked segment or a side file
                port, seq = tail.split("-")
                yield path, int(port), int(seq)


def restore_segments(recovered: Recovered, names: list[str]) -> None:
    """Link a held chunk's segments back under the names its frame uses (the held links
    stay, in case this worker dies too)."""
    for link, name in zip(recovered.held.links, names, strict=True):
        target = os.path.join(shm.SHM_DIR, name)
        try:
            os.link(link, target)
        except FileExistsError:
            pass


def recoverable(held: list[tuple[int, int, int]]) -> bool:
    """Whether a worker that died with these held chunks died on one item: a chunk was
    being processed or an item probed, and nothing was half sent or in ``on_error``."""
    marks = [mark for _port, _seq, mark in held]
    if any(m == SENDING or (m >= 0 and m == recovering(m // 2)) for m in marks):
        return False
    return any(m == PROCESSING or m >= 0 for m in marks)


def _culprits(path: str) -> dict[int, int | None]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return {}
    out: dict[int, int | None] = {}
    for offset in range(0, len(data) - len(data) % _DEAD.size, _DEAD.size):
        item, code = _DEAD.unpack_from(data, offset)
        out[item] = None if code == _NO_EXITCODE else code
    return out


def remove_all(stem: str) -> None:
    """Remove every held file of a run, spilled ones included."""
    for held in (stem, _spilled(stem)):
        for path in glob.glob(glob.escape(held) + "-*"):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def _write_new(path: str, data: bytes) -> int:
    """A new file holding ``data``, open for its mark to move; nothing left if it fails."""
    fd = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    try:
        shm.write_all(fd, data)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    return fd
