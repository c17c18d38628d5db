"""Seeing a run: what a trace and live metrics cost on the overhead benchmark.

The 3 trivial stages of ``bench_overhead`` over 200,000 ints, run alternately without and
with ``trace=`` (and ``metrics_port=``): the median of the pairs' ratios is the cost. A
trace is sampled from the counters every worker keeps anyway, so it should cost little.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import tempfile

from common import Section, inc, paired

from olympipe import Pipeline

N = 200_000


def run(trace: str | None = None, metrics_port: int | None = None) -> None:
    out = (
        Pipeline(range(N), start_method="fork", trace=trace, metrics_port=metrics_port)
        .task(inc)
        .task(inc)
        .task(inc)
        .wait_for_result()
    )
    assert len(out) == N


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(reps: int) -> Section:
    s = Section(
        "Seeing a run: the cost of a trace and of live metrics",
        "with trace= on, the 3 trivial stages (200,000 ints) lose at most 3 % (>= 0.97x without)",
    )
    r = max(41, 8 * reps)
    mp.set_start_method("fork", force=True)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "run.json")
        plain, traced, ratio = paired(run, lambda: run(trace=path), r)
        size = os.path.getsize(path)
    s.row("3 trivial stages", f"{N / plain / 1e6:.2f} M items/s")
    s.row(
        "3 trivial stages, trace=",
        f"{N / traced / 1e6:.2f} M items/s",
        f"{ratio:.3f}x without (paired median); file {size / 1e3:.0f} kB",
    )
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        s.note("prometheus_client not installed: `pip install -e .[metrics]`")
        return s
    plain, served, ratio = paired(run, lambda: run(metrics_port=free_port()), r)
    s.row("3 trivial stages, metrics_port=", f"{N / served / 1e6:.2f} M items/s", f"{ratio:.3f}x without")
    return s


if __name__ == "__main__":
    print(main(7).markdown())
