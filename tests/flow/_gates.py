"""A source and a stage that hand over through named pipes: the stage holds its first item
until the source has given every other one, with no sleep (importable by workers and
Ray actors)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path


class Gates:
    """Two FIFOs: ``started`` (the stage has its first item) and ``done`` (the source has
    given all the rest)."""

    def __init__(self, folder: Path) -> None:
        self.started = str(folder / "started")
        self.done = str(folder / "done")
        os.mkfifo(self.started)
        os.mkfifo(self.done)
        self.last = 0  # see pass_on

    def source(self, n: int) -> Iterator[int]:
        """0, then (once the stage holds it) 1 .. n-1 as fast as they are read, then done."""
        yield 0
        with open(self.started) as started:  # blocks until the stage opens it to write
            started.read()
        yield from range(1, n)
        with open(self.done, "w") as done:
            done.write("x")

    def pass_on(self, x: int) -> int:
        """An upstream stage: on item ``last`` (every earlier chunk sent already) it lets
        :meth:`hold_first` go."""
        if x == self.last:
            with open(self.done, "w") as done:
                done.write("x")
        return x

    def release_after(self, seconds: float) -> threading.Thread:
        """A thread that waits until the stage holds item 0, then lets it go ``seconds``
        later: item 0 stays at least that long in the pipeline."""

        def release() -> None:
            with open(self.started) as started:
                started.read()
            time.sleep(seconds)  # the duration measured, not a synchronisation
            with open(self.done, "w") as done:
                done.write("x")

        thread = threading.Thread(target=release, daemon=True)
        thread.start()
        return thread

    def source_only(self, n: int) -> Iterator[int]:
        """0, then (once the stage holds it) 1 .. n-1; ``done`` is someone else's."""
        yield 0
        with open(self.started) as started:
            started.read()
        yield from range(1, n)

    def frames(self, n: int, size: int) -> Iterator[tuple[int, bytes]]:
        """:meth:`source`, each item with a frame of ``size`` bytes."""
        for i in self.source(n):
            yield i, bytes(size)

    def hold_first_frame(self, frame: tuple[int, bytes]) -> int:
        """:meth:`hold_first` on a frame's number; the number and the frame's size."""
        return self.hold_first(frame[0]) * 0 + len(frame[1]) + frame[0]

    def hold_first(self, x: int) -> int:
        """The stage: item 0 waits until the source has given everything."""
        if x == 0:
            with open(self.started, "w") as started:
                started.write("x")
            with open(self.done) as done:
                done.read()
        return x
