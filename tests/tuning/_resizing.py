"""Stage functions and a caller script for the resizing tests (importable by fork servers)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

BUDGET = 5  # a batch and an explode(fn) take 2: the two auto stages share 3


def burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def cheap(x: int) -> int:
    burn(0.0003)
    return x


def heavy(x: int) -> int:
    burn(0.004)
    return x


def unbatch(batch: list[int]) -> list[int]:
    return batch


class Closing:
    """A class_task whose close_method leaves a file saying how many items it saw."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.seen = 0

    def take(self, x: int) -> int:
        self.seen += 1
        burn(0.0003)
        return x

    def close(self) -> None:
        with open(os.path.join(self.folder, f"closed-{os.getpid()}"), "w") as out:
            out.write(str(self.seen))


class HeavyUntilTold:
    """:func:`heavy`, but the first worker to take the file ``flag`` (once a test makes it)
    kills itself on the item it holds: a crash at a moment the test chooses."""

    def __init__(self, flag: str) -> None:
        self.flag = flag

    def __call__(self, x: int) -> int:
        try:
            os.rename(self.flag, self.flag + ".taken")  # only one worker wins
        except FileNotFoundError:
            return heavy(x)
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")


def died(x: int, exc: Exception) -> int:
    """``on_error``: the item whose worker died, negated."""
    return -x - 1


def shifting(source: Any, first: Any = None) -> Any:
    """A cheap auto stage that starts with the spare worker, then a heavy one: the
    controller must move a worker from the first to the second."""
    from olympipe import Pipeline

    head = Pipeline(source, workers=BUDGET)
    p = head.task(cheap, count="auto") if first is None else first(head)
    return p.batch(4).explode(unbatch).task(heavy, count="auto")


if __name__ == "__main__":  # the caller of the Ctrl-C test: reports once workers moved
    import itertools

    import psutil

    p = shifting(itertools.count(), None)
    told = False
    for _ in p:  # goes on until Ctrl-C
        if not told and p.stats().resizes:
            pids = [c.pid for c in psutil.Process().children(recursive=True)]
            print("ready", *pids, flush=True)
            told = True
