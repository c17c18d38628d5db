"""The seed image pipeline: one stage per step against Pool.imap of the composed function."""

from __future__ import annotations

import multiprocessing as mp
import sys
from pathlib import Path

from common import Section, median_time

sys.path.insert(0, str(Path(__file__).parents[1] / "examples"))
import image_preprocessing as ex

N = 60


def composed(path: Path) -> list[bytes]:
    return ex.with_mirror(ex.contrast(ex.grayscale(ex.load_normalized(path))))


def main(reps: int) -> Section:
    s = Section(
        "Seed image pipeline: 1920x1080 JPEG -> 200x200 gray, contrast, mirror, PNG",
        ">= Pool.imap's images/s",
    )
    paths = ex.make_photos(N)
    r = max(1, reps // 2)
    serial = median_time(lambda: ex.serial(paths), r)
    ours = median_time(lambda: ex.pipeline(paths, 2, progress=False).wait_for_result(), r)

    def pool_run() -> None:
        with mp.get_context("fork").Pool(2) as pool:
            list(pool.imap(composed, paths, 1))

    pool = median_time(pool_run, r)
    s.row("serial loop", f"{N / serial:.1f} images/s")
    s.row("olympipe, one stage per step", f"{N / ours:.1f} images/s", f"{pool / ours:.2f}x Pool")
    s.row("Pool(2).imap composed", f"{N / pool:.1f} images/s")
    return s
