"""Ways for a worker to die, shared by the fault tests (importable by every start method)."""

from __future__ import annotations

import ctypes
import faulthandler
import os
import signal
from collections.abc import Callable


def os_exit(code: int = 3) -> None:
    os._exit(code)


def sigkill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def segfault() -> None:
    faulthandler.disable()  # a deliberate crash: no "Fatal Python error" dump in the log
    ctypes.string_at(0)


CRASHES: dict[str, Callable[[], None]] = {"os_exit": os_exit, "sigkill": sigkill, "segfault": segfault}
