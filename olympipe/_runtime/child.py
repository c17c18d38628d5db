"""How a worker process behaves as a child: deaf to Ctrl-C, stopped by SIGTERM in order,
dead with its caller, and quiet about a stop that lands inside a finalizer."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import select
import signal
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any

_PR_SET_PDEATHSIG = 1


class Stopped(BaseException):
    """Raised in a worker by SIGTERM: the supervisor is tearing the run down."""


def die_by(signum: signal.Signals) -> None:
    """Exit as if killed by ``signum`` so the exit code says what happened."""
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    os._exit(128 + signum)  # pragma: no cover - not reached


def _raise_stopped(signum: int, frame: object) -> None:
    raise Stopped


class _StopSwallowed:
    """SIGTERM's :class:`Stopped` can be raised inside a weakref finalizer or ``__del__``,
    where Python prints "Exception ignored in ..." and carries on. Such a stop is noted
    quietly instead, and the worker's loop stops at its next chunk (:func:`stop_if_asked`);
    a worker blocked reading is killed after the teardown's grace, as any other."""

    pending = False

    def __init__(self, previous: Any) -> None:
        self._previous = previous

    def __call__(self, unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, Stopped):
            _StopSwallowed.pending = True
            return
        self._previous(unraisable)


def stop_if_asked() -> None:
    """Raise :class:`Stopped` if a SIGTERM was swallowed by a finalizer (see above)."""
    if _StopSwallowed.pending:
        raise Stopped


def _watch_lifeline(lifeline: Connection) -> None:
    """Die with the caller: its end of the lifeline closes when it exits, however it exits."""
    try:
        lifeline.recv_bytes()
    except (EOFError, OSError):
        pass
    os.kill(os.getpid(), signal.SIGKILL)


def _watch_caller(pidfd: int) -> None:
    """Die with the caller: a pidfd turns readable when the whole process has exited."""
    select.select([pidfd], [], [])
    os.kill(os.getpid(), signal.SIGKILL)


def become_worker(parent_pid: int, lifeline: Connection | None, watch_caller: bool) -> None:
    """Ignore Ctrl-C (the caller handles it once), stop cleanly on SIGTERM, die with the caller.

    How a worker dies with its caller depends on how it started. Forked from the caller's
    main thread: the kernel's parent-death signal. From a fork server: a lifeline pipe whose
    only writer is the caller (the server's children keep it alive). Forked from another
    thread: a pidfd of the caller, because the parent-death signal fires when the thread that
    forked exits, not the process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    sys.unraisablehook = _StopSwallowed(sys.unraisablehook)
    signal.signal(signal.SIGTERM, _raise_stopped)
    # A stage may run a pipeline of its own: multiprocessing refuses children to a daemon
    # process. Its workers die with this one all the same (they watch their own caller).
    multiprocessing.current_process().daemon = False
    if lifeline is not None:
        threading.Thread(target=_watch_lifeline, args=(lifeline,), daemon=True).start()
        return
    if watch_caller and hasattr(os, "pidfd_open"):
        try:
            pidfd = os.pidfd_open(parent_pid)
        except OSError:  # gone already
            os._exit(1)
        threading.Thread(target=_watch_caller, args=(pidfd,), daemon=True).start()
    else:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - not Linux
            pass
    if os.getppid() != parent_pid:
        os._exit(1)  # the caller died before the watch was armed
