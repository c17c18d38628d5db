"""The janitor: removes a caller's shared-memory segments once the caller is gone.

A run removes its own segments when it closes. A caller that never gets to close (killed
by SIGKILL, or by SIGTERM with Python's default handler) cannot; so the first run that uses
shared memory in a process starts one small janitor process for it. The janitor blocks
reading a pipe whose write end only the caller (and workers forked from it, which die with
it) hold; at end of file every one of them is gone, and it unlinks every segment named
``olympipe-<caller pid>-*``, then exits. It holds no other file descriptor, so it never keeps
a pipe of a run open.
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from typing import Any

from olympipe._transport import shm

_PR_SET_NAME = 15
NAME = b"olympipe-janitor"  # the process's name in ps and psutil

_lock = threading.Lock()
_started_for: int | None = None  # the pid whose janitor runs
_keep: list[Any] = []  # the caller's write end: open for the caller's whole life


def ensure_janitor(ctx: BaseContext, start: Any) -> None:
    """Start this process's janitor once; ``start(process)`` starts it (the caller knows
    how to start a process safely right now)."""
    global _started_for
    with _lock:
        if _started_for == os.getpid():
            return
        reader, writer = ctx.Pipe(duplex=False)
        process = ctx.Process(  # type: ignore[attr-defined]
            target=_janitor_main,
            args=(reader, f"olympipe-{os.getpid()}"),
            name="olympipe-janitor",
            daemon=True,
        )
        start(process)
        reader.close()
        _keep[:] = [writer, process]
        _started_for = os.getpid()


def _janitor_main(reader: Connection, prefix: str) -> None:
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
    shm.remove_all(prefix)
    os._exit(0)
