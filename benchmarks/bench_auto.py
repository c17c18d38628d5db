"""count="auto" against Pool.imap and the best hand-tuned counts found in the same run.

Four workloads (the goals of self-tuning): the seed image pipeline with every step
"auto"; three CPU stages costing 1 : 10 : 1 ms; a workload whose costly stage moves halfway
(and the same under a budget of 3 workers for 2 stages); the 3 trivial stages of the overhead
benchmark. Hand-tuned figures come from a grid over counts 1..cores+1 per stage, each
assignment run once, the best then timed again like the others.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import Section, inc, median_time, paired

from olympipe import Pipeline

sys.path.insert(0, str(Path(__file__).parents[1] / "examples"))
import image_preprocessing as ex

CORES = len(os.sched_getaffinity(0))
IMAGES = 40
ITEMS = 200
SHIFT_ITEMS = 200


def composed(path: Path) -> list[bytes]:
    return ex.with_mirror(ex.contrast(ex.grayscale(ex.load_normalized(path))))


def images(paths: list[Path], counts: tuple[Any, ...]) -> list[bytes]:
    a, b, c, d = counts
    return (
        Pipeline(paths, start_method="fork")
        .task(ex.load_normalized, count=a)
        .task(ex.grayscale, count=b)
        .task(ex.contrast, count=c)
        .task(ex.with_mirror, count=d)
        .explode()
        .wait_for_result()
    )


def burn(seconds: float) -> None:
    """Spend ``seconds`` of this thread's CPU time: work, not waiting. (A wall-clock burn
    finishes on time even when the OS gave it half a core, so oversubscribed counts would
    look faster than the CPUs allow.)"""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def cost_1ms(x: int) -> int:
    burn(0.001)
    return x


def cost_10ms(x: int) -> int:
    burn(0.010)
    return x


def settling(reps: int) -> float:
    """The 1:10:1 ms stages, all auto, over about 5 s: the rate in the second after 2 s over
    the rate of the last second (median of ``reps`` runs)."""
    ratios = []
    for _ in range(reps):
        stream = (
            Pipeline(range(ITEMS * 4), start_method="fork")
            .task(cost_1ms, count="auto")
            .task(cost_10ms, count="auto")
            .task(cost_1ms, count="auto")
        )
        t0 = time.perf_counter()
        times = [time.perf_counter() - t0 for _ in stream]
        end = times[-1]
        early = sum(1 for t in times if 2.0 <= t < 3.0)
        late = sum(1 for t in times if end - 1.0 <= t < end)
        ratios.append(early / late if late else 0.0)
    return sorted(ratios)[len(ratios) // 2]


def three(counts: tuple[Any, ...], workers: int | None = None) -> list[int]:
    a, b, c = counts
    return (
        Pipeline(range(ITEMS), start_method="fork", workers=workers)
        .task(cost_1ms, count=a)
        .task(cost_10ms, count=b)
        .task(cost_1ms, count=c)
        .wait_for_result()
    )


def first_half_heavy(x: int) -> int:
    burn(0.005 if x < SHIFT_ITEMS // 2 else 0.0005)
    return x


def second_half_heavy(x: int) -> int:
    burn(0.0005 if x < SHIFT_ITEMS // 2 else 0.005)
    return x


def shifting(counts: tuple[Any, ...], workers: int | None = None) -> list[int]:
    a, b = counts
    return (
        Pipeline(range(SHIFT_ITEMS), start_method="fork", workers=workers)
        .task(first_half_heavy, count=a)
        .task(second_half_heavy, count=b)
        .wait_for_result()
    )


def unbatch(batch: list[int]) -> list[int]:
    return batch


def separated(counts: tuple[Any, ...], workers: int | None = None) -> list[int]:
    """Two auto stages a batch keeps apart: they cannot fuse, so workers must move."""
    a, b = counts
    return (
        Pipeline(range(ITEMS * 4), start_method="fork", workers=workers)
        .task(cost_1ms, count=a)
        .batch(4)
        .explode(unbatch)
        .task(cost_10ms if b != "cheap" else cost_1ms, count=b)
        .wait_for_result()
    )


def trivial(count: Any) -> list[int]:
    return (
        Pipeline(range(100_000), start_method="fork")
        .task(inc, count=count)
        .task(inc, count=count)
        .task(inc, count=count)
        .wait_for_result()
    )


def cpu_seconds(fn: Callable[[], Any], reps: int) -> float:
    """Median CPU seconds of ``reps`` calls of ``fn``: this process's and its children's."""
    spent = []
    for _ in range(reps):
        before = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        fn()
        after = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        spent.append(sum(a.ru_utime + a.ru_stime - b.ru_utime - b.ru_stime for a, b in zip(after, before)))
    return statistics.median(spent)


def best_of_grid(
    run: Callable[[tuple[int, ...]], Any], stages: int, reps: int
) -> tuple[tuple[int, ...], float]:
    """The fastest fixed assignment (each run once), then timed as the others are."""
    grid = list(itertools.product(range(1, CORES + 2), repeat=stages))
    timed = [(median_time(lambda c=c: run(c), 1), c) for c in grid]
    best = min(timed)[1]
    return best, median_time(lambda: run(best), reps)


def main(reps: int) -> Section:
    s = Section(
        'count="auto": every stage sized by the engine',
        "images >= 1.05x Pool.imap and >= 0.95x the best grid; 1:10:1 ms and a moving"
        " bottleneck >= 0.95x the best grid, 1:10:1 ms within 5 % of its final rate 2 s after"
        " the start; trivial stages >= 0.9x count=1",
    )
    r = max(3, reps // 2)
    paths = ex.make_photos(IMAGES)

    def pool_images() -> None:
        with mp.get_context("fork").Pool(CORES) as pool:
            list(pool.imap(composed, paths, 1))

    # Pool and auto alternate, and the ratio is the median of the pairs': a 5 % goal is
    # within the drift of a shared machine between two separate series.
    pool, auto, paired_ratio = paired(pool_images, lambda: images(paths, ("auto",) * 4), max(7, r))
    best, tuned = best_of_grid(lambda c: images(paths, c), 4, r)
    s.row("images: Pool.imap composed", f"{IMAGES / pool:.1f} images/s")
    s.row("images: all auto", f"{IMAGES / auto:.1f} images/s", f"{paired_ratio:.2f}x Pool (paired)")
    s.row(f"images: best grid {best}", f"{IMAGES / tuned:.1f} images/s", f"auto {tuned / auto:.2f}x it")
    # Where the time goes: the CPU each spends per image, in every process it runs (workers
    # and caller). With every core busy, the one that spends less per image is the faster.
    serial = median_time(lambda: [composed(p) for p in paths], r)
    cpu_pool = cpu_seconds(pool_images, r)
    cpu_auto = cpu_seconds(lambda: images(paths, ("auto",) * 4), r)
    s.row("images: serial loop", f"{IMAGES / serial:.1f} images/s", f"Pool {serial / pool:.2f}x it")
    s.row(
        "images: CPU per image, all processes: Pool / auto",
        f"{cpu_pool / IMAGES * 1e3:.1f} / {cpu_auto / IMAGES * 1e3:.1f} ms",
        f"auto {cpu_auto / cpu_pool:.2f}x Pool's",
    )

    auto = median_time(lambda: three(("auto",) * 3), r)
    best, tuned = best_of_grid(three, 3, r)
    s.row("1:10:1 ms: all auto", f"{ITEMS / auto:.0f} items/s")
    s.row(f"1:10:1 ms: best grid {best}", f"{ITEMS / tuned:.0f} items/s", f"auto {tuned / auto:.2f}x it")
    settled = settling(r)
    s.row(
        "1:10:1 ms, all auto: rate from 2 s to 3 s / last second",
        f"{settled:.2f}",
        "within 5 %" if settled >= 0.95 else "below",
    )

    auto = median_time(lambda: shifting(("auto", "auto")), r)
    best, tuned = best_of_grid(shifting, 2, r)
    s.row("moving bottleneck: all auto", f"{SHIFT_ITEMS / auto:.0f} items/s")
    s.row(
        f"moving bottleneck: best grid {best}",
        f"{SHIFT_ITEMS / tuned:.0f} items/s",
        f"auto {tuned / auto:.2f}x it",
    )
    auto3 = median_time(lambda: shifting(("auto", "auto"), workers=3), r)
    fixed = min(median_time(lambda c=c: shifting(c, workers=3), r) for c in ((1, 2), (2, 1)))
    s.row("moving bottleneck, workers=3: auto", f"{SHIFT_ITEMS / auto3:.0f} items/s")
    s.row(
        "moving bottleneck, workers=3: best of (1,2),(2,1)",
        f"{SHIFT_ITEMS / fixed:.0f} items/s",
        f"auto {fixed / auto3:.2f}x it",
    )

    # A batch and an explode keep the two apart; a budget of 5 leaves them 3 to share.
    auto5 = median_time(lambda: separated(("auto", "auto"), workers=5), r)
    pairs = [(1, 2), (2, 1)]
    fixed5 = {c: median_time(lambda c=c: separated(c), r) for c in pairs}
    best5 = min(fixed5, key=lambda c: fixed5[c])
    s.row("separated 1 : 10 ms, workers=5: auto", f"{ITEMS * 4 / auto5:.0f} items/s")
    s.row(
        f"separated 1 : 10 ms: best of {pairs} {best5}",
        f"{ITEMS * 4 / fixed5[best5]:.0f} items/s",
        f"auto {fixed5[best5] / auto5:.2f}x it",
    )

    one = median_time(lambda: trivial(1), r)
    auto = median_time(lambda: trivial("auto"), r)
    s.row("3 trivial stages, count=1", f"{100_000 / one / 1e6:.2f} M items/s")
    s.row("3 trivial stages, auto", f"{100_000 / auto / 1e6:.2f} M items/s", f"{one / auto:.2f}x count=1")
    return s


if __name__ == "__main__":
    print(main(3).markdown())
