"""The janitor: removes a caller's shared-memory segments once the caller is gone.

A run removes its own segments when it closes. A caller that never gets to close (killed
by SIGKILL, or by SIGTERM with Python's default handler) cannot; so the first run that uses
shared memory in a process starts one small janitor process for it. The janitor blocks
reading a pipe whose write end only the caller and its workers (which die with it) hold; at
end of file every one of them is gone, and it unlinks every segment named
``olympipe-<caller pid>-*``, then exits.

It is a fresh interpreter (``python -I -S -c``), not a fork: a forked janitor would keep,
for the caller's whole life, every page the caller had when it started (the caller's
later writes and frees give it private copies), which can be gigabytes. It runs in a
session of its own, so a Ctrl-C meant for the caller never reaches it, and holds no file
descriptor but its end of the pipe. Where the interpreter cannot be started again (a frozen
application), it is forked as a last resort.
"""

from __future__ import annotations

import ctypes
import glob
import multiprocessing.spawn
import os
import signal
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from typing import Any

from olympipe._transport import shm

_PR_SET_NAME = 15
# The kernel keeps 15 bytes of a name: ``ps -o comm`` and psutil show "olympipe-janito".
# The command line (``ps -f``) starts with a comment that says what it is and for whom.
NAME = b"olympipe-janitor"

# Process-wide: one janitor per caller process, shared by all its runs (it outlives them).
_lock = threading.Lock()
_started_for: int | None = None  # the pid whose janitor runs
_keep: list[Any] = []  # the caller's write end and the process: kept for the caller's life

# Runs without site-packages: only the standard library, nothing of olympipe.
_PROGRAM = f"""
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
try:
    import ctypes
    ctypes.CDLL(None).prctl({_PR_SET_NAME}, ctypes.c_char_p({NAME!r}), 0, 0, 0)
except (OSError, AttributeError):
    pass
fd, directories, prefix = int(sys.argv[1]), sys.argv[2].split(os.pathsep), sys.argv[3] + "-"
while True:
    try:
        if not os.read(fd, 4096):
            break
    except InterruptedError:
        continue
    except OSError:
        break
for directory in directories:
    try:
        names = os.listdir(directory)
    except OSError:
        continue
    for name in names:
        if name.startswith(prefix):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass
"""


def ensure_janitor(ctx: BaseContext, start: Any) -> None:
    """Start this process's janitor once; ``start(process)`` starts a forked one, where the
    interpreter cannot be started again (the caller knows how to fork safely right now)."""
    global _started_for
    with _lock:
        if _started_for == os.getpid():
            return
        prefix = f"olympipe-{os.getpid()}"
        reader, writer = os.pipe()
        try:
            process: Any = _start_interpreter(reader, prefix)
        except OSError:
            process = None
        finally:
            os.close(reader)
        if process is None:
            os.close(writer)
            connection, writer_end = ctx.Pipe(duplex=False)
            process = ctx.Process(  # type: ignore[attr-defined]
                target=_forked_janitor, args=(connection, prefix), name="olympipe-janitor", daemon=True
            )
            start(process)
            connection.close()
            _keep[:] = [writer_end, process]
        else:
            _keep[:] = [Connection(writer, readable=False), process]
        _started_for = os.getpid()


def holder() -> Connection | None:
    """The write end of this process's janitor pipe, for a worker to hold for its life: the
    janitor then waits for that worker too. A forked worker holds it already; one started
    by a fork server or spawned does not, and could write a segment after the janitor's
    sweep, between the caller's death and its own."""
    with _lock:
        if _started_for != os.getpid() or not _keep:
            return None
        end: Connection = _keep[0]
        return end


def _start_interpreter(reader: int, prefix: str) -> subprocess.Popen[bytes] | None:
    """The janitor as a fresh interpreter, or ``None`` when this one cannot be re-run."""
    executable = multiprocessing.spawn.get_executable()
    if getattr(sys, "frozen", False) or not executable:
        return None
    headline = f"# olympipe janitor of pid {os.getpid()}: removes {shm.SHM_DIR}/{prefix}-* once it is gone\n"
    return subprocess.Popen(
        [os.fsdecode(executable), "-I", "-S", "-c", headline + _PROGRAM, str(reader), _swept(), prefix],
        pass_fds=(reader,),
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def _forked_janitor(reader: Connection, prefix: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ctypes.CDLL(None).prctl(_PR_SET_NAME, ctypes.c_char_p(NAME), 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
    keep = reader.fileno()
    # Under fork every descriptor of the caller was inherited (pipes of runs included, and
    # the write end of our own pipe): hold none of them.
    os.closerange(3, keep)
    os.closerange(keep + 1, 1 << 16)
    try:
        reader.recv_bytes()
    except (EOFError, OSError):
        pass
    for directory in _swept().split(os.pathsep):
        for path in glob.glob(os.path.join(directory, f"{glob.escape(prefix)}-*")):
            try:
                os.unlink(path)
            except OSError:
                pass
    os._exit(0)


def _swept() -> str:
    """The directories a janitor sweeps: /dev/shm, and the temporary directory, where a
    crash-isolated stage's journal spills what /dev/shm has no room for."""
    import tempfile

    return os.pathsep.join((shm.SHM_DIR, tempfile.gettempdir()))
