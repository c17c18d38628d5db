"""Workloads timed the same way on either olympipe: run by olympipe 2.2.0's interpreter (the
package names collide), or by ours where a benchmark compares both as fresh processes."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from typing import Any


def inc(x: int) -> int:
    return x + 1


def ident(a: object) -> object:
    return a


def bump(a: object) -> object:
    a += 1  # type: ignore[operator]
    return a


def new_arrays(n: int) -> Iterator[Any]:
    """4 MiB arrays made one by one, as a camera or a decoder gives them."""
    import numpy as np

    for i in range(n):
        yield np.full((1024, 1024), i, dtype=np.float32)


def main() -> None:
    from olympipe import Pipeline

    which = sys.argv[1]
    if which.startswith("large"):
        import numpy  # noqa: F401  # before the clock starts, as a script does
    if which == "overhead":
        n = 20_000
        t0 = time.perf_counter()
        Pipeline(range(n)).task(inc).task(inc).task(inc).wait_for_result()
        print(json.dumps({"items_per_s": n / (time.perf_counter() - t0)}))
    elif which == "large":
        import numpy as np

        arrays = [np.full((1024, 1024), i, dtype=np.float32) for i in range(int(sys.argv[2]))]
        t0 = time.perf_counter()
        Pipeline(arrays).task(ident).task(ident).task(ident).wait_for_result()
        dt = time.perf_counter() - t0
        print(json.dumps({"gb_per_s": len(arrays) * 4 / 1024 / dt}))
    elif which == "large-inplace":
        n = int(sys.argv[2])
        t0 = time.perf_counter()
        out = Pipeline(new_arrays(n)).task(bump).task(bump).task(bump).wait_for_result()
        dt = time.perf_counter() - t0
        assert len(out) == n
        print(json.dumps({"gb_per_s": n * 4 / 1024 / dt}))
    elif which == "large-stream":
        n = int(sys.argv[2])
        t0 = time.perf_counter()
        seen = 0
        for _a in Pipeline(new_arrays(n)).task(bump).task(bump).task(bump):  # each result dropped
            seen += 1
        dt = time.perf_counter() - t0
        assert seen == n
        print(json.dumps({"gb_per_s": n * 4 / 1024 / dt}))
    elif which == "startup":
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            Pipeline([1]).task(inc).task(inc).task(inc).task(inc).task(inc).wait_for_result()
            times.append(time.perf_counter() - t0)
        times.sort()
        print(json.dumps({"seconds": times[len(times) // 2]}))


if __name__ == "__main__":
    main()
