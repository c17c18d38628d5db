"""Overhead: 3 trivial stages over 200,000 ints, against Pool.imap, mpire and the raw pipes."""

from __future__ import annotations

import multiprocessing as mp
import pickle
from multiprocessing.connection import Connection

from common import Section, inc, median_time, run_peer

from olympipe import Pipeline

N = 200_000
BATCH = 1000


N_BARS = 2_000_000  # long enough for the bars to refresh several times


def olympipe_run(n: int = N) -> None:
    out = Pipeline(range(n), start_method="fork").task(inc).task(inc).task(inc).wait_for_result()
    assert out[-1] == n + 2


def _keep(item: int, exc: Exception) -> int:
    return item


def olympipe_isolated_run(n: int = N) -> None:
    """The same run with crash isolation on (``on_error`` on every stage)."""
    out = (
        Pipeline(range(n), start_method="fork")
        .task(inc, on_error=_keep)
        .task(inc, on_error=_keep)
        .task(inc, on_error=_keep)
        .wait_for_result()
    )
    assert out[-1] == n + 2


def olympipe_recycled_run(n: int = N) -> None:
    """The same run with each stage's worker replaced every 50,000 items."""
    out = (
        Pipeline(range(n), start_method="fork")
        .task(inc, max_items_per_worker=50_000)
        .task(inc, max_items_per_worker=50_000)
        .task(inc, max_items_per_worker=50_000)
        .wait_for_result()
    )
    assert out[-1] == n + 2


def olympipe_with_bars(n: int = N_BARS) -> None:
    """The same run with progress bars drawn (to /dev/null, as if stderr were a terminal)."""
    import contextlib
    import os

    import olympipe._progress as progress

    real = progress._is_terminal
    progress._is_terminal = lambda: True
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
            out = (
                Pipeline(range(n), start_method="fork", progress=True)
                .task(inc)
                .task(inc)
                .task(inc)
                .wait_for_result()
            )
    finally:
        progress._is_terminal = real
    assert out[-1] == n + 2


def bars_cost(reps: int) -> float:
    """Median ratio of run times with and without bars, runs alternated (shared machine)."""
    import statistics
    import time

    ratios = []
    for _ in range(reps):
        t0 = time.perf_counter()
        olympipe_run(N_BARS)
        plain = time.perf_counter() - t0
        t0 = time.perf_counter()
        olympipe_with_bars(N_BARS)
        ratios.append((time.perf_counter() - t0) / plain)
    return statistics.median(ratios)


def pool_run() -> None:
    with mp.get_context("fork").Pool(2) as pool:
        out = list(pool.imap(inc, pool.imap(inc, pool.imap(inc, range(N), BATCH), BATCH), BATCH))
    assert out[-1] == N + 2


def mpire_run() -> None:
    from mpire import WorkerPool

    with WorkerPool(n_jobs=2) as pool:
        out = pool.map(
            inc, pool.map(inc, pool.map(inc, range(N), chunk_size=BATCH), chunk_size=BATCH), chunk_size=BATCH
        )
    assert out[-1] == N + 2


def _relay(rx: Connection, tx: Connection) -> None:
    while True:
        data = rx.recv_bytes()
        if data == b"":
            tx.send_bytes(b"")
            return
        tx.send_bytes(pickle.dumps(pickle.loads(data), 5))


def raw_pipes_run() -> None:
    """The limit: 3 pipe hops of pickled 1,000-item batches, re-pickled at every hop."""
    ctx = mp.get_context("fork")
    a_rx, a_tx = ctx.Pipe(False)
    b_rx, b_tx = ctx.Pipe(False)
    c_rx, c_tx = ctx.Pipe(False)
    procs = [ctx.Process(target=_relay, args=(a_rx, b_tx)), ctx.Process(target=_relay, args=(b_rx, c_tx))]
    for p in procs:
        p.start()
    import threading

    def feed() -> None:
        for i in range(0, N, BATCH):
            a_tx.send_bytes(pickle.dumps(list(range(i, i + BATCH)), 5))
        a_tx.send_bytes(b"")

    t = threading.Thread(target=feed)
    t.start()
    count = 0
    while True:
        data = c_rx.recv_bytes()
        if data == b"":
            break
        count += len(pickle.loads(data))
    t.join()
    for p in procs:
        p.join()
    assert count == N


def main(reps: int) -> Section:
    s = Section(
        "Overhead: 3 trivial stages, 200,000 ints",
        ">= 1,000,000 items/s and >= 1.2x Pool.imap chained 3 times (chunksize 1,000)",
    )
    serial = median_time(lambda: [inc(inc(inc(x))) for x in range(N)], reps)
    ours = median_time(olympipe_run, reps)
    isolated = median_time(olympipe_isolated_run, reps)
    recycled = median_time(olympipe_recycled_run, reps)
    bars = bars_cost(max(7, reps))
    pool = median_time(pool_run, reps)
    raw = median_time(raw_pipes_run, reps)
    s.row("serial loop", f"{N / serial:,.0f} items/s")
    s.row("olympipe", f"{N / ours:,.0f} items/s", f"{pool / ours:.2f}x Pool")
    s.row(
        "olympipe, crash isolation on (on_error on 3 stages)",
        f"{N / isolated:,.0f} items/s",
        f"{pool / isolated:.2f}x Pool",
    )
    s.row(
        "olympipe, recycled workers (max_items_per_worker=50,000: 12 replacements)",
        f"{N / recycled:,.0f} items/s",
        f"{pool / recycled:.2f}x Pool",
    )
    s.row("olympipe with progress bars (2,000,000 items)", f"{bars:.3f}x the time without")
    s.row("multiprocessing.Pool.imap x3", f"{N / pool:,.0f} items/s", "1.00x Pool")
    try:
        mp_time = median_time(mpire_run, reps)
        s.row("mpire map x3", f"{N / mp_time:,.0f} items/s", f"{pool / mp_time:.2f}x Pool")
    except ImportError:
        s.note("mpire not installed: `pip install -e .[bench]`")
    old = run_peer("peer_olympipe2.py", "overhead")
    if old:
        s.row(
            "olympipe 2.2.0 (20,000 items)",
            f"{old['items_per_s']:,.0f} items/s",
            f"{(N / ours) / old['items_per_s']:.0f}x slower than olympipe",
        )
    s.row("raw limit: 3 pipe hops, 1,000-item pickles", f"{N / raw:,.0f} items/s")
    s.note(f"olympipe reaches {raw / ours:.0%} of the raw pipe limit")
    return s
