"""CPU-bound stages against the machine's measured parallel ceiling."""

from __future__ import annotations

import multiprocessing as mp

from common import Section, burn, median_time

from olympipe import Pipeline

N = 1000


def burn_2ms(x: int) -> int:
    burn(0.002)
    return x


def burn_half(x: int) -> int:
    burn(0.0005)
    return x


def burn_3ms(x: int) -> int:
    burn(0.003)
    return x


def _loop(n: int) -> None:
    for _ in range(n):
        burn(0.002)


def ceiling(reps: int) -> float:
    """Speedup of two independent serial loops in two processes over one serial loop."""
    one = median_time(lambda: _loop(2 * N), 1)
    ctx = mp.get_context("fork")

    def two() -> None:
        ps = [ctx.Process(target=_loop, args=(N,)) for _ in range(2)]
        for p in ps:
            p.start()
        for p in ps:
            p.join()

    return one / median_time(two, max(1, reps // 2))


def main(reps: int) -> Section:
    s = Section(
        "CPU-bound stages",
        "2 x 2 ms stages >= 0.9x the parallel ceiling; 0.5/3/0.5 ms within 10 % of the slow stage",
    )
    r = max(1, reps // 2)
    limit = ceiling(reps)
    two = median_time(
        lambda: Pipeline(range(N), start_method="fork").task(burn_2ms).task(burn_2ms).wait_for_result(), r
    )
    speedup = (N * 0.004) / two
    s.row("parallel ceiling (2 loops in 2 processes)", f"{limit:.2f}x")
    s.row("olympipe 2 stages x 2 ms", f"{speedup:.2f}x serial", f"{speedup / limit:.2f} of ceiling")
    three = median_time(
        lambda: (
            Pipeline(range(N), start_method="fork")
            .task(burn_half)
            .task(burn_3ms)
            .task(burn_half)
            .wait_for_result()
        ),
        r,
    )
    bound = N * 0.003
    s.row("olympipe 0.5/3/0.5 ms", f"{N / three:.0f} items/s", f"{bound / three:.2f} of slow-stage bound")
    lifted = median_time(
        lambda: (
            Pipeline(range(N), start_method="fork")
            .task(burn_half)
            .task(burn_3ms, count=2)
            .task(burn_half)
            .wait_for_result()
        ),
        r,
    )
    s.row("same, count=2 on the slow stage", f"{N / lifted:.0f} items/s", f"{three / lifted:.2f}x faster")
    return s
