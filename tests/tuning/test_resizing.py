"""count="auto" moves workers while the run goes on: nothing lost, order kept, within the
budget, close_method run by each retiring worker, and every fault path still clean."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from olympipe import Pipeline, PipelineError, WorkerDied
from tests.tuning import _resizing as r

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).parents[2]
N = 1500


def test_workers_move_to_the_costly_stage_and_every_item_comes_out_in_order() -> None:
    p = r.shifting(range(N))
    assert p.wait_for_result() == list(range(N))
    stats = p.stats()
    moves = [(stage, old, new) for _t, stage, old, new in stats.resizes]
    assert ("cheap", 2, 1) in moves
    assert ("heavy", 1, 2) in moves
    rows = {row.name: row for row in stats.rows}
    assert (rows["cheap"].min_workers, rows["cheap"].max_workers) == (1, 2)
    assert (rows["heavy"].min_workers, rows["heavy"].max_workers) == (1, 2)
    assert rows["heavy"].workers == 2
    assert rows["heavy"].items_in == rows["cheap"].items_out == N


def test_a_crash_isolated_auto_stage_gives_its_spare_worker_back(tmp_path: Path) -> None:
    """on_error makes a stage's workers replaceable (they keep what they took in the
    journal): they take the controller's retire requests all the same, so the retiring
    worker's close_method runs while the run goes on, not at its end."""

    def first(head: Any) -> Any:
        return head.class_task(
            r.Closing,
            r.Closing.take,
            class_args=[str(tmp_path)],
            close_method=r.Closing.close,
            count="auto",
            on_error=r.died,
        )

    p = r.shifting(range(N), first)
    out = []
    first_closed: list[int] | None = None  # the items of each worker closed when one first is
    for x in p:
        out.append(x)
        if first_closed is None and any(tmp_path.iterdir()):
            first_closed = [int(c.read_text()) for c in tmp_path.iterdir()]
    assert out == list(range(N))
    assert ("take", 2, 1) in [(s, o, n) for _t, s, o, n in p.stats().resizes]
    assert first_closed is not None
    assert sum(first_closed) < N  # one closed while its stage still had items, not at the end
    closed = sorted(tmp_path.iterdir())
    assert len(closed) == 2  # the retired worker and the one left at the end
    assert sum(int(c.read_text()) for c in closed) == N


def test_never_more_live_workers_than_the_budget_plus_one_retiring() -> None:
    me = psutil.Process()
    Pipeline(range(3)).task(abs).wait_for_result()  # the janitor starts with a first run
    helpers = {c.pid for c in me.children()}
    p = r.shifting(range(N))
    seen = []
    for n, _x in enumerate(p):
        if n % 25 == 0:
            seen.append(len({c.pid for c in me.children()} - helpers))
    assert p.stats().resizes
    assert max(seen) <= r.BUDGET + 1


def test_a_retiring_worker_runs_close_method_once(tmp_path: Path) -> None:
    def first(head: Any) -> Any:
        return head.class_task(
            r.Closing, r.Closing.take, class_args=[str(tmp_path)], close_method=r.Closing.close, count="auto"
        )

    p = r.shifting(range(N), first)
    assert p.wait_for_result() == list(range(N))
    assert ("take", 2, 1) in [(s, o, n) for _t, s, o, n in p.stats().resizes]
    closed = sorted(tmp_path.iterdir())
    assert len(closed) == 2  # the retired worker and the one left at the end
    assert sum(int(c.read_text()) for c in closed) == N


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_resizing_works_under_every_start_method(method: str) -> None:
    from olympipe import Pipeline

    p = (
        Pipeline(range(N), workers=r.BUDGET, start_method=method)
        .task(r.cheap, count="auto")
        .batch(4)
        .explode(r.unbatch)
        .task(r.heavy, count="auto")
    )
    assert p.wait_for_result() == list(range(N))
    assert p.stats().resizes


def test_a_worker_killed_after_a_resize_fails_the_run_cleanly() -> None:
    me = psutil.Process()
    Pipeline(range(3)).task(abs).wait_for_result()
    helpers = {c.pid for c in me.children()}
    p = r.shifting(range(10 * N))

    def consume() -> None:
        for _x in p:
            if p.stats().resizes:
                workers = sorted({c.pid for c in me.children()} - helpers)
                os.kill(workers[-1], signal.SIGKILL)  # the newest: the one just started

    with pytest.raises((WorkerDied, PipelineError)):
        consume()
    # the leak guard then checks that no process, thread or segment is left


@pytest.mark.parametrize("isolated", [True, False])
def test_a_worker_that_dies_during_resizes(tmp_path: Path, isolated: bool) -> None:
    """A worker of a stage being resized dies on an item once workers have moved: with
    ``on_error`` it is replaced and its item goes to ``on_error`` (nothing else lost, order
    kept); without, the run fails with ``WorkerDied`` (and the leak guard finds nothing
    left behind)."""
    flag = str(tmp_path / "kill")
    heavy = r.HeavyUntilTold(flag)
    p = (
        Pipeline(range(N), workers=r.BUDGET)
        .task(r.cheap, count="auto")
        .batch(4)
        .explode(r.unbatch)
        .task(heavy, count="auto", name="heavy", on_error=r.died if isolated else None)
    )
    got = []

    def consume() -> None:
        for x in p:
            got.append(x)
            if p.stats().resizes and not os.path.exists(flag + ".taken"):
                Path(flag).touch()

    if not isolated:
        with pytest.raises(WorkerDied):
            consume()
        return
    consume()
    assert os.path.exists(flag + ".taken")
    dead = [x for x in got if x < 0]
    assert len(dead) == 1
    assert got == [-x - 1 if x == -dead[0] - 1 else x for x in range(N)]
    stats = p.stats()
    rows = {row.name: row for row in stats.rows}
    assert (rows["heavy"].crashes, rows["heavy"].errors) == (1, 1)
    assert ("heavy", 1, 2) in [(s, o, n) for _t, s, o, n in stats.resizes]


def test_breaking_out_during_resizes_leaves_nothing_behind() -> None:
    p = r.shifting(range(10 * N))
    for _x in p:
        if len(p.stats().resizes) >= 2:
            break
    assert len(p.stats().resizes) >= 2


def test_ctrl_c_after_a_resize_stops_the_caller_and_every_worker() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.tuning._resizing"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=env,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("ready"), proc.stderr.read() if proc.stderr else line
    workers = [psutil.Process(int(pid)) for pid in line.split()[1:] if psutil.pid_exists(int(pid))]
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert "KeyboardInterrupt" in err
    _, alive = psutil.wait_procs(workers, timeout=5)
    alive = [w for w in alive if w.status() != psutil.STATUS_ZOMBIE]
    assert not [w for w in alive if "janito" not in w.name()], alive
