"""A caller with large arrays in flight, for the shared-memory cleanup tests."""

from __future__ import annotations

import itertools
import os
import sys
import time
from collections.abc import Iterator

import numpy as np

from olympipe import Pipeline


def arrays() -> Iterator[np.ndarray]:
    for i in itertools.count():
        yield np.full(1 << 18, i, dtype=np.float64)  # 2 MiB: through shared memory


def slow(a: np.ndarray) -> np.ndarray:
    time.sleep(0.02)
    return a


class SlowToClose:
    """A stage whose close takes half a second: the teardown lasts that long."""

    def apply(self, a: np.ndarray) -> np.ndarray:
        return slow(a)

    def close(self) -> None:
        print("closing", flush=True)  # the teardown is under way: the test's cue
        time.sleep(0.5)


def mine() -> list[str]:
    return [e for e in os.listdir("/dev/shm") if e.startswith(f"olympipe-{os.getpid()}-")]


def fresh(a: np.ndarray) -> np.ndarray:
    return a + 1  # a new array: each output is a new segment


if __name__ == "__main__":
    if sys.argv[2:] == ["fresh"]:  # workers writing segments all the time
        p = Pipeline(arrays(), start_method=sys.argv[1]).task(fresh, count=2).task(fresh)
    else:
        p = (
            Pipeline(arrays(), start_method=sys.argv[1])
            .task(slow, count=2)
            .class_task(SlowToClose, SlowToClose.apply, close_method=SlowToClose.close)
        )
    try:
        for i, _ in enumerate(p):
            if i == 5:
                print("ready", flush=True)
    except KeyboardInterrupt:
        print("left", len(mine()), flush=True)
