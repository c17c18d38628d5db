"""Soak: millions of small items and thousands of 4 MiB ones; memory, fds and /dev/shm stay flat.

    python benchmarks/soak.py [--small 5000000] [--large 2000]

Samples the PSS of the caller plus its workers, the caller's open file descriptors and the
olympipe entries of /dev/shm every 0.2 s, and fails (exit 1) if any grows over the run or
if the run does not finish within its time limit.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

import numpy as np
import psutil
from common import tree_pss_mb

from olympipe import Pipeline

LIMIT_SECONDS = 1800


def inc(x: int) -> int:
    return x + 1


def touch(a: np.ndarray) -> np.ndarray:
    a[0, 0] += 1
    return a


def arrays(n: int):  # type: ignore[no-untyped-def]
    for i in range(n):
        yield np.full((1024, 1024), i, dtype=np.float32)


class Sampler:
    """Samples memory, file descriptors and shared-memory entries every second."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float, int, int]] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._done.wait(0.2):
            pss = tree_pss_mb()
            shm = len([e for e in os.listdir("/dev/shm") if e.startswith(f"olympipe-{os.getpid()}-")])
            self.samples.append((time.monotonic(), pss, me.num_fds(), shm))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def report(name: str, sampler: Sampler, seconds: float, items: int) -> bool:
    s = sampler.samples
    if len(s) < 4:
        print(f"{name}: {items:,} items in {seconds:.1f} s (too short to judge growth)")
        return True
    quarter = max(1, len(s) // 4)
    first = max(x[1] for x in s[:quarter])
    last = max(x[1] for x in s[-quarter:])
    fds = (s[0][2], s[-1][2])
    shm = max(x[3] for x in s)
    flat = last <= first * 1.2 + 20 and fds[1] <= fds[0] + 2
    print(
        f"{name}: {items:,} items in {seconds:.1f} s; PSS first quarter {first:.0f} MB, last quarter"
        f" {last:.0f} MB; fds {fds[0]} -> {fds[1]}; /dev/shm entries at most {shm}"
        f" -> {'flat' if flat else 'GROWING'}"
    )
    return flat


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=5_000_000)
    parser.add_argument("--large", type=int, default=2000)
    args = parser.parse_args()
    timer = threading.Timer(LIMIT_SECONDS, lambda: os._exit(2))  # a hang fails, loudly
    timer.daemon = True
    timer.start()
    ok = True
    with Sampler() as sampler:
        t0 = time.monotonic()
        n = 0
        for batch in Pipeline(range(args.small), start_method="fork").task(inc).task(inc, count=2).batch(100):
            n += len(batch)
        ok &= n == args.small
        ok &= report("small items", sampler, time.monotonic() - t0, n)
    with Sampler() as sampler:
        t0 = time.monotonic()
        n = 0
        for _ in Pipeline(arrays(args.large), start_method="fork").task(touch).task(touch):
            n += 1
        ok &= n == args.large
        ok &= report("4 MiB arrays", sampler, time.monotonic() - t0, n)
    left = [e for e in os.listdir("/dev/shm") if e.startswith(f"olympipe-{os.getpid()}-")]
    print(f"/dev/shm entries left: {len(left)}")
    sys.exit(0 if ok and not left else 1)


if __name__ == "__main__":
    main()
