"""Startup: 1 item through 5 stages, process start and teardown included."""

from __future__ import annotations

import json
import multiprocessing as mp
import subprocess
import sys

from common import Section, inc, median_time, run_peer

from olympipe import Pipeline


def main(reps: int) -> Section:
    s = Section(
        "Startup: 1 item through 5 stages",
        "<= 30 ms median (fork); <= 80 ms under forkserver, start to teardown",
    )
    ours = median_time(
        lambda: (
            Pipeline([1], start_method="fork")
            .task(inc)
            .task(inc)
            .task(inc)
            .task(inc)
            .task(inc)
            .wait_for_result()
        ),
        reps * 4,
    )

    def pool_run() -> None:
        with mp.get_context("fork").Pool(2) as pool:
            pool.map(inc, [1])

    pool = median_time(pool_run, reps * 4)
    s.row("olympipe, 5 stages (fork)", f"{ours * 1000:.1f} ms")
    first, warm = forkserver_runs(reps)
    s.row("olympipe, 5 stages (forkserver), first run of a process", f"{first * 1000:.1f} ms")
    s.row("olympipe, 5 stages (forkserver), later runs", f"{warm * 1000:.1f} ms")
    s.row("Pool(2) start + map 1 item + close", f"{pool * 1000:.1f} ms")
    old = run_peer("peer_olympipe2.py", "startup")
    if old:
        s.row(
            "olympipe 2.2.0, 5 stages",
            f"{old['seconds'] * 1000:.1f} ms",
            f"{old['seconds'] / ours:.0f}x ours",
        )
    return s


FORKSERVER = """
import json, time
from olympipe import Pipeline
def inc(x):
    return x + 1
times = []
for _ in range(6):
    t0 = time.perf_counter()
    p = Pipeline([1], start_method="forkserver").task(inc).task(inc).task(inc)
    p.task(inc).task(inc).wait_for_result()
    times.append(time.perf_counter() - t0)
print(json.dumps(times))
"""


def forkserver_runs(reps: int) -> tuple[float, float]:
    """Medians over fresh interpreters of the first run (the fork server starts) and of
    the later runs (it is up)."""
    firsts, warms = [], []
    for _ in range(reps):
        out = subprocess.run([sys.executable, "-c", FORKSERVER], capture_output=True, text=True, check=True)
        times = json.loads(out.stdout)
        firsts.append(times[0])
        warms.append(sorted(times[1:])[len(times[1:]) // 2])
    firsts.sort()
    warms.sort()
    return firsts[len(firsts) // 2], warms[len(warms) // 2]
