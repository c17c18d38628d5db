"""The Ray engine against the bare-Ray design and Ray Data, on one local 2-CPU Ray.

Workloads: 3 trivial stages over 20,000 ints, and 100 numpy arrays of 4 MiB through 3
identity stages. Each contender's best warm run is reported (Ray's first run pays for
starting worker processes).

* **olympipe, engine="ray"**: ``Pipeline(data).task(f).task(g).task(h)`` on ``RayEngine()``.
* **bare Ray**: the design olympipe's engine is built on, written by hand: one actor per
  stage, the driver cuts chunks (100 ints, or 1 array) and calls ``a1.run(chunk) -> a2.run
  (ref) -> a3.run(ref)``, keeping a bounded deque of final refs popped in order.
* **Ray Data**: the same per-item functions, ``ds.map(f)`` three times with
  ``preserve_order=True`` (Ray Data fuses the three maps into one task).
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
from common import Section

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

N_INTS = 20_000
N_ARRAYS = 100
MB = 4


def inc(x: int) -> int:
    return x + 1


def dbl(x: int) -> int:
    return 2 * x


def dec(x: int) -> int:
    return x - 1


def ident(a: Any) -> Any:
    return a


def best(fn: Callable[[], Any], reps: int) -> float:
    """The best of ``reps`` warm runs (one warm-up run first)."""
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bare_ray(ray: Any, fns: list[Callable[[Any], Any]], data: list[Any], chunk: int) -> list[Any]:
    """The driver-orchestrated design by hand: refs chained actor to actor, bounded deque."""

    @ray.remote(num_cpus=0)
    class Stage:
        def __init__(self, fn: Callable[[Any], Any]) -> None:
            self.fn = fn

        def run(self, items: list[Any]) -> list[Any]:
            return [self.fn(x) for x in items]

    actors = [Stage.remote(fn) for fn in fns]
    out: list[Any] = []
    window: deque[Any] = deque()
    for start in range(0, len(data), chunk):
        ref = data[start : start + chunk]
        for actor in actors:
            ref = actor.run.remote(ref)
        window.append(ref)
        if len(window) >= 8:
            out.extend(ray.get(window.popleft()))
    while window:
        out.extend(ray.get(window.popleft()))
    for actor in actors:
        ray.kill(actor)
    return out


def ray_data(ray: Any, fns: list[Callable[[Any], Any]], data: list[Any]) -> list[Any]:
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ds = ray.data.from_items([{"v": x} for x in data])
    for fn in fns:
        ds = ds.map(lambda row, fn=fn: {"v": fn(row["v"])})
    return [row["v"] for row in ds.take_all()]


def main(reps: int) -> Section:
    import ray

    from olympipe import Pipeline, RayEngine

    s = Section(
        "Ray engine: 3 stages on a local 2-CPU Ray, best warm run",
        ">= 0.8x the bare-Ray design and >= Ray Data, on small items and on 4 MiB arrays",
    )
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=2 << 30)
    reps = max(3, reps)
    ints = list(range(N_INTS))
    fns: list[Callable[[Any], Any]] = [inc, dbl, dec]
    want = [dec(dbl(inc(x))) for x in ints]
    engine = RayEngine()

    def ours_ints() -> None:
        got = Pipeline(ints).task(inc).task(dbl).task(dec).wait_for_result(engine=engine)
        assert got == want

    ours = N_INTS / best(ours_ints, reps)
    bare = N_INTS / best(lambda: bare_ray(ray, fns, ints, 100), reps)
    data = N_INTS / best(lambda: ray_data(ray, fns, ints), reps)
    s.row("olympipe Ray engine, 20,000 ints", f"{ours / 1e3:.1f} k items/s")
    s.row("bare Ray (chunks of 100)", f"{bare / 1e3:.1f} k items/s", f"ours = {ours / bare:.2f}x")
    s.row("Ray Data (3 fused maps)", f"{data / 1e3:.1f} k items/s", f"ours = {ours / data:.2f}x")

    arrays = [np.full((1024, 1024), i, dtype=np.float32) for i in range(N_ARRAYS)]
    gb = N_ARRAYS * MB / 1024

    def ours_arrays() -> None:
        got = Pipeline(arrays).task(ident).task(ident).task(ident).wait_for_result(engine=engine)
        assert len(got) == N_ARRAYS
        assert float(got[-1][0, 0]) == N_ARRAYS - 1

    ours_a = best(ours_arrays, reps)
    bare_a = best(lambda: bare_ray(ray, [ident] * 3, arrays, 1), reps)
    data_a = best(lambda: ray_data(ray, [ident] * 3, arrays), reps)
    s.row("olympipe Ray engine, 100 x 4 MiB", f"{N_ARRAYS / ours_a:.0f} arrays/s ({gb / ours_a:.2f} GB/s)")
    s.row(
        "bare Ray (1 array per call)", f"{N_ARRAYS / bare_a:.0f} arrays/s", f"ours = {bare_a / ours_a:.2f}x"
    )
    s.row("Ray Data (3 fused maps)", f"{N_ARRAYS / data_a:.0f} arrays/s", f"ours = {data_a / ours_a:.2f}x")
    s.note("best warm run of each; one local Ray with 2 CPUs shared by driver and actors")
    ray.shutdown()
    return s
