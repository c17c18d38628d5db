"""Ways for a worker to die, shared by the fault tests (importable by every start method)."""

from __future__ import annotations

import ctypes
import faulthandler
import os
import signal
import sys
from collections.abc import Callable
from typing import Any


def os_exit(code: int = 3) -> None:
    os._exit(code)


def sigkill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def segfault() -> None:
    faulthandler.disable()  # a deliberate crash: no "Fatal Python error" dump in the log
    ctypes.string_at(0)


CRASHES: dict[str, Callable[[], None]] = {"os_exit": os_exit, "sigkill": sigkill, "segfault": segfault}


def fail(kind: str) -> None:
    """Fail the way ``kind`` says: ``exception`` raises, ``exit`` calls ``sys.exit(3)``,
    ``crash`` ends the process at once (``os._exit(3)``)."""
    if kind == "exception":
        raise ValueError(f"failed on purpose ({kind})")
    if kind == "exit":
        sys.exit(3)
    os._exit(3)


def _rebuild_failing(kind: str) -> None:
    fail(kind)


class FailsToPickle:
    """A value whose pickling fails (``kind``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __reduce__(self) -> Any:
        fail(self.kind)


class FailsToUnpickle:
    """A value that pickles, and whose unpickling fails (``kind``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __reduce__(self) -> Any:
        return (_rebuild_failing, (self.kind,))


class StageFailingToUnpickle:
    """A stage function (identity) whose definition fails to unpickle in the worker."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __call__(self, x: int) -> int:
        return x

    def __reduce__(self) -> Any:
        return (_rebuild_failing, (self.kind,))


class StageFailingToPickle(StageFailingToUnpickle):
    """A stage function (identity) whose definition fails to pickle in the caller."""

    def __reduce__(self) -> Any:
        fail(self.kind)


def returns_at_5(failing: type[FailsToPickle | FailsToUnpickle], kind: str) -> Callable[[int], Any]:
    """A stage that gives ``failing(kind)`` for item 5 and every other item as it is."""

    def stage(x: int) -> Any:
        return failing(kind) if x == 5 else x

    return stage
