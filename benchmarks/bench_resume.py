"""Resumable runs: what recording the progress costs, and what a kill -9 costs afterwards."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from common import Section, inc, paired

from olympipe import Pipeline
from olympipe._resume.state import load

sys.path.insert(0, str(Path(__file__).parents[1] / "examples"))
import image_preprocessing as ex

N = 200_000
N_KILLED = 1_000_000
KILLS = 10
HERE = Path(__file__).parent

CHILD = """
import sys
from olympipe import Pipeline
from common import inc
out = sys.stdout
pipe = Pipeline(range(int(sys.argv[2])), resume=sys.argv[1], start_method="fork")
for x in pipe.task(inc).task(inc).task(inc):
    out.write(f"{x}\\n")
out.flush()
"""


def _trivial(resume: str | None) -> Pipeline[int]:
    return Pipeline(range(N), start_method="fork", resume=resume).task(inc).task(inc).task(inc)


def _images(paths: list[Path], resume: str | None) -> Pipeline[bytes]:
    return (
        Pipeline(paths, resume=resume)
        .task(ex.load_normalized, count=2)
        .task(ex.grayscale)
        .task(ex.contrast)
        .task(ex.with_mirror)
        .explode()
    )


def _fresh(directory: str) -> str:
    path = os.path.join(directory, "p.olympipe")
    if os.path.exists(path):
        os.remove(path)
    return path


def _drain(pipe: Pipeline[object]) -> None:
    for _ in pipe:
        pass


def _window(directory: str) -> int:
    """The items in flight of the killed run's pipeline: the most source items read and not
    yet finished, sampled as the caller takes outputs."""
    pipe = (
        Pipeline(range(N_KILLED), start_method="fork", resume=_fresh(directory)).task(inc).task(inc).task(inc)
    )
    most = 0
    for taken, x in enumerate(pipe, 1):
        if taken % 997 == 0:
            most = max(most, pipe.stats().source_items - (x - 2))
    return most


def _killed_runs(directory: str) -> tuple[int, int, int]:
    """A run killed with SIGKILL at KILLS random moments, then run to its end: items lost,
    items delivered twice (computed again), and the largest progress file seen."""
    state = _fresh(directory)
    command = [sys.executable, "-c", CHILD, state, str(N_KILLED)]
    env = {**os.environ, "PYTHONPATH": f"{HERE}:{HERE.parent}"}
    rnd = random.Random(7)
    delivered: list[int] = []
    largest = 0
    for _ in range(KILLS):
        child = subprocess.Popen(command, stdout=subprocess.PIPE, env=env)
        assert child.stdout is not None
        want = rnd.randrange(20_000, 150_000)
        for got, line in enumerate(child.stdout, 1):  # the kill comes after that many outputs
            delivered.append(int(line))
            if got == want:
                break
        child.send_signal(signal.SIGKILL)
        child.wait()
        delivered.extend(int(line) for line in child.stdout.read().split())
        child.stdout.close()
        if os.path.exists(state):
            largest = max(largest, os.path.getsize(state))
    rest = subprocess.run(command, stdout=subprocess.PIPE, env=env, check=True)
    delivered.extend(int(line) for line in rest.stdout.split())
    largest = max(largest, os.path.getsize(state))
    seen: set[int] = set()
    twice = 0
    for x in delivered:
        twice += x in seen
        seen.add(x)
    lost = len(set(range(3, N_KILLED + 3)) - seen)
    progress = load(state)
    assert progress is not None
    assert progress.finished
    return lost, twice, largest


def main(reps: int) -> Section:
    s = Section(
        "Resumable runs (resume=): the cost of recording the progress, and a run killed 10 times",
        "resumable >= 0.98x not resumable (3 trivial stages over 200,000 ints; the seed image"
        " pipeline); 1,000,000 items killed with SIGKILL 10 times: 0 lost, recomputed <= 10"
        " windows, progress file < 1 MB",
    )
    with tempfile.TemporaryDirectory() as directory:
        pairs = max(21, 4 * reps)  # a run lasts about 0.1 s: many pairs for a steady median
        plain, resumable, ratio = paired(
            lambda: _drain(_trivial(None)), lambda: _drain(_trivial(_fresh(directory))), pairs
        )
        s.row("3 trivial stages, iterated, not resumable", f"{N / plain:,.0f} items/s")
        s.row("3 trivial stages, iterated, resume=", f"{N / resumable:,.0f} items/s", f"{ratio:.2f}x")
        plain, resumable, ratio = paired(
            lambda: _trivial(None).wait_for_completion(),
            lambda: _trivial(_fresh(directory)).wait_for_completion(),
            pairs,
        )
        s.row(
            "3 trivial stages, wait_for_completion, resume=", f"{N / resumable:,.0f} items/s", f"{ratio:.2f}x"
        )
        paths = ex.make_photos(60)
        plain, resumable, ratio = paired(
            lambda: _drain(_images(paths, None)),
            lambda: _drain(_images(paths, _fresh(directory))),
            reps,
        )
        s.row("seed image pipeline, not resumable", f"{60 / plain:.1f} images/s")
        s.row("seed image pipeline, resume=", f"{60 / resumable:.1f} images/s", f"{ratio:.2f}x")
        window = _window(directory)
        lost, twice, largest = _killed_runs(directory)
        s.row("1,000,000 items, 10 kills: items lost", f"{lost}")
        s.row("... items delivered twice (recomputed)", f"{twice:,}", f"{twice / window:.1f} windows")
        s.row("... the window (items in flight, measured)", f"{window:,}")
        s.row("... largest progress file", f"{largest} bytes")
        s.note(
            "ratios are per pair of runs (not resumable / resumable), runs alternated; above 1"
            " the resumable run was faster. Iteration records the progress as outputs are taken;"
            " wait_for_completion as they leave the last stage"
        )
    return s


if __name__ == "__main__":
    print(main(3).markdown())
