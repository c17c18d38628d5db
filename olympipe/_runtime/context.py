"""Choosing how worker processes start.

Fork is the fastest start (a few milliseconds a worker, nothing pickled) and the default
when it is safe: when the caller has no other thread that could hold a lock at the moment of
the fork. Otherwise the default is ``forkserver``. Every stage definition also travels with
``dill``, so lambdas and closures work with every method.
"""

from __future__ import annotations

import multiprocessing
import threading
from multiprocessing.context import BaseContext

START_METHODS = ("fork", "forkserver", "spawn")


def check_start_method(method: str | None) -> None:
    """Reject an unknown start method at build time."""
    if method is not None and method not in START_METHODS:
        raise ValueError(f"start_method must be one of {START_METHODS} or None, got {method!r}")


def resolve_start_method(method: str | None) -> str:
    """The start method to use: the requested one, else fork from a single-threaded caller."""
    check_start_method(method)
    if method is not None:
        return method
    return "fork" if threading.active_count() == 1 else "forkserver"


def get_context(method: str) -> BaseContext:
    """The multiprocessing context of ``method``."""
    return multiprocessing.get_context(method)
