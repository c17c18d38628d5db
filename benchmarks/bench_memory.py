"""Memory: an infinite generator through 2 stages with limit(100_000), against Pool.imap."""

from __future__ import annotations

import itertools
import multiprocessing as mp
import threading

from common import Section, inc, tree_pss_mb

from olympipe import Pipeline

N = 100_000


def peak_pss_mb(fn: object) -> float:
    """Peak memory of this process plus its children while ``fn`` runs (sampled every 10 ms).

    See common.tree_pss_mb for why PSS."""
    peak = 0.0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, tree_pss_mb())
            if done.wait(0.01):
                return

    t = threading.Thread(target=sample)
    t.start()
    try:
        fn()  # type: ignore[operator]
    finally:
        done.set()
        t.join()
    return peak


def main(reps: int) -> Section:
    s = Section("Memory: infinite generator, 2 stages, limit(100,000)", "peak memory (PSS) <= 2x Pool.imap's")

    def ours() -> None:
        for _ in Pipeline(itertools.count(), start_method="fork").task(inc).task(inc).limit(N):
            pass

    def pool() -> None:
        with mp.get_context("fork").Pool(2) as p:
            for _ in p.imap(inc, p.imap(inc, itertools.islice(itertools.count(), N), 1000), 1000):
                pass

    ours_mb = peak_pss_mb(ours)
    pool_mb = peak_pss_mb(pool)
    s.row("olympipe peak PSS (parent + workers)", f"{ours_mb:.0f} MB", f"{ours_mb / pool_mb:.2f}x Pool")
    s.row("Pool.imap x2 peak PSS", f"{pool_mb:.0f} MB")
    s.note("Pool.imap's task feeder reads its input ahead without bound; ours is pulled as drained")
    return s
