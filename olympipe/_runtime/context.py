"""Choosing how worker processes start, and starting them without re-running the caller.

Fork is the fastest start (a few milliseconds a worker, nothing pickled) and the default
when it is safe: when the caller has no other thread that could hold a lock at the moment of
the fork, and has not initialised CUDA (a CUDA context does not survive a fork). Otherwise
the default is ``forkserver``.

Workers never need the caller's ``__main__``: stage definitions travel by value with
``dill``, and classes defined in ``__main__`` travel by value with the items (see
``codec``). So under ``forkserver`` the workers are started without re-running the caller's
script (multiprocessing would replay it in every worker): a script needs no
``if __name__ == "__main__":`` guard, and neither does ``python -c``, a script read from
stdin or a notebook. The fork server preloads olympipe, so a worker starts in milliseconds.
Only an explicit ``spawn`` replays the script, as ``multiprocessing`` does, and needs the guard.

Environment (read when a run starts; ``start_method=`` wins): ``OLYMPIPE_FORCE_FORK=1``,
``OLYMPIPE_FORCE_SPAWN=1``, ``OLYMPIPE_DISABLE_SHM=1`` (olympipe 2.x names).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.forkserver
import multiprocessing.spawn
import os
import signal
import sys
import threading
from collections.abc import Iterator
from multiprocessing.context import BaseContext
from typing import Any

START_METHODS = ("fork", "forkserver", "spawn")
#: What the fork server imports once, so that each worker it forks starts warm.
PRELOAD = ["olympipe._runtime.worker", "olympipe._stages.mapping", "olympipe._stages.stateful", "dill"]


def check_start_method(method: str | None) -> None:
    """Reject an unknown start method at build time."""
    if method is not None and method not in START_METHODS:
        raise ValueError(f"start_method must be one of {START_METHODS} or None, got {method!r}")


def resolve_start_method(method: str | None) -> str:
    """The start method to use: the requested one, else the environment's, else fork from a
    single-threaded caller without CUDA, else forkserver."""
    check_start_method(method)
    if method is not None:
        return method
    if os.environ.get("OLYMPIPE_FORCE_FORK") == "1":
        return "fork"
    if os.environ.get("OLYMPIPE_FORCE_SPAWN") == "1":
        return "spawn"
    if threading.active_count() == 1 and not cuda_initialized():
        return "fork"
    return "forkserver"


def cuda_initialized() -> bool:
    """Whether this process has initialised CUDA through torch (never imports torch)."""
    torch: Any = sys.modules.get("torch")
    if torch is None:
        return False
    try:
        return bool(torch.cuda.is_initialized())
    except Exception:  # a partial or stand-in torch: assume the worst
        return True


def copies_forced() -> bool:
    """``OLYMPIPE_COPY_INHERITED=1``: large buffers the workers already hold are copied all
    the same (see ``_transport.inherited``)."""
    return os.environ.get("OLYMPIPE_COPY_INHERITED") == "1"


def shared_memory_disabled() -> bool:
    """``OLYMPIPE_DISABLE_SHM=1``: every chunk travels through the pipes."""
    return os.environ.get("OLYMPIPE_DISABLE_SHM") == "1"


# Process-wide: the fork server is one per process (multiprocessing's), so is what it preloads.
_preloaded = False


def get_context(method: str) -> BaseContext:
    """The multiprocessing context of ``method`` (the fork server preloads olympipe)."""
    global _preloaded
    ctx = multiprocessing.get_context(method)
    if method == "forkserver" and not _preloaded:
        ctx.set_forkserver_preload(PRELOAD)
        _preloaded = True
    return ctx


def start_fork_server() -> None:
    """Start the fork server now if it is not running, without waiting for it.

    Its start (an interpreter, then the preloaded imports) is the largest part of a first
    forkserver run; started early, it overlaps with whatever the caller does meanwhile.
    """
    get_context("forkserver")  # sets what the server preloads, which must come first
    with without_main_replay():  # it never needs __main__ either (and %run's has no __spec__)
        multiprocessing.forkserver.ensure_running()


def warm_up_in_notebook() -> None:
    """In a notebook kernel (always threaded, so forkserver is the default), start the fork
    server when olympipe is imported: the first run, cells later, finds it ready."""
    in_kernel = "ipykernel" in sys.modules and multiprocessing.parent_process() is None
    if in_kernel and resolve_start_method(None) == "forkserver":
        start_fork_server()


# -- starting workers without replaying __main__ ------------------------------------------

# Process-wide: multiprocessing asks its own module-level get_preparation_data for every
# process it starts; the patch (below) can only live there, and ``_launching`` tells it,
# per thread, that an olympipe start is under way.
_launching = threading.local()
_original_preparation = multiprocessing.spawn.get_preparation_data


def _preparation_data(name: str) -> dict[str, Any]:
    without_main = getattr(_launching, "without_main", False)
    main = sys.modules.get("__main__")
    if without_main and main is not None and not hasattr(main, "__spec__"):
        main.__spec__ = None  # as a script's has; IPython's %run namespace has none at all
    data: dict[str, Any] = _original_preparation(name)
    if without_main:
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
    return data


@contextlib.contextmanager
def without_main_replay() -> Iterator[None]:
    """Processes this thread starts meanwhile do not re-run the caller's ``__main__``.

    multiprocessing gives every spawned or fork-server child the data to re-import the
    parent's main script. The wrapper drops it for this thread only; every other caller of
    multiprocessing sees the original behaviour."""
    multiprocessing.spawn.get_preparation_data = _preparation_data
    _launching.without_main = True
    try:
        yield
    finally:
        _launching.without_main = False


@contextlib.contextmanager
def ctrl_c_held() -> Iterator[None]:
    """Hold Ctrl-C until the block ends, then raise it: teardown is short and must finish.

    Python runs signal handlers in the main thread only, so only there can it be held."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)
    if caught:
        if callable(previous):
            previous(signal.SIGINT, None)  # the caller's own handler, or KeyboardInterrupt
        elif previous != signal.SIG_IGN:
            raise KeyboardInterrupt
