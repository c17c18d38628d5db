"""A caller process for the signal tests: runs an endless pipeline and reports its workers."""

from __future__ import annotations

import itertools
import sys
import time

import psutil

from olympipe import Pipeline


def slow(x: int) -> int:
    time.sleep(0.005)
    return x


if __name__ == "__main__":
    method = sys.argv[1]
    p = Pipeline(itertools.count(), start_method=method).task(slow, count=2).task(slow).batch(2)
    for i, _ in enumerate(p):
        if i == 3:
            pids = [c.pid for c in psutil.Process().children(recursive=True)]
            print("ready", *pids, flush=True)
