"""The worker processes of one run: started, replaced, grown, reaped and stopped.

:class:`Workforce` is the only owner of a run's processes. The supervisor (``Run``) decides
what each worker is (its :class:`~olympipe._runtime.worker.WorkerPlan`); the workforce
starts it, learns from the control channel how each one ended, and acts on an exit:

* ``Done``: nothing to do;
* ``Retired`` (``max_items_per_worker``): a replacement takes its place and what it held;
* ``Retired`` with ``shrink`` (a resizable stage gave up a worker): its place empties;
* a death on one item of a stage that isolates crashes (read from the journal's marks):
  a replacement takes over, and the item goes to ``on_error``;
* any other death: :class:`~olympipe.WorkerDied`, at once.

Workers started after the first ones (replacements, a stage that grows) come from a fork
server, never from forking a caller whose feeder threads may hold locks.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing.process
import time
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
from multiprocessing.context import BaseContext
from typing import Any

from olympipe._graph import Plan
from olympipe._runtime import journal
from olympipe._runtime.context import without_main_replay
from olympipe._runtime.counters import CRASHES, CURRENT, FIELDS, RECYCLED, STARTED, Counters
from olympipe._runtime.messages import Control, Done, Failure, Retired
from olympipe._runtime.resizer import Resizable, Resizer
from olympipe._runtime.worker import WorkerPlan, worker_main
from olympipe._stages.base import StageSpec
from olympipe._transport.codec import Definition, dumps_definition
from olympipe.errors import PipelineError, WorkerDied

log = logging.getLogger("olympipe")

GRACE_SECONDS = 0.5  # how long a terminated worker may take to run its close() before SIGKILL


class _EmptyPlace:
    """The process of a place with no worker (a resizable stage's): already ended."""

    exitcode = 0
    sentinel = None

    def join(self, timeout: float | None = None) -> None:
        pass

    def close(self) -> None:
        pass

    def terminate(self) -> None:
        pass

    def kill(self) -> None:
        pass


EMPTY = _EmptyPlace()


@dataclass
class Worker:
    """One place of a stage and the process in it now."""

    index: int
    label: str
    process: Any
    done: bool = False
    retired: bool = False  # max_items_per_worker reached: replace it
    shrunk: bool = False  # took a retire request of a resizable stage: its place empties
    marks: tuple[tuple[int, int, int], ...] | None = None  # a replacement: what its predecessor held


class Unpicklable(Exception):
    """A stage that a fork server cannot be handed: it does not pickle."""


class Workforce:
    """The processes of one run."""

    def __init__(
        self,
        method: str,
        ctx: BaseContext,
        respawn_method: str,
        respawn_ctx: BaseContext,
        counters: Counters,
        shm_prefix: str | None,
    ) -> None:
        self.method = method
        self._ctx = ctx
        self._respawn_method = respawn_method
        self._respawn_ctx = respawn_ctx
        self.counters = counters
        self.shm_prefix = shm_prefix
        self.workers: list[Worker] = []  # by place (a counters row)
        self.plans: dict[int, tuple[WorkerPlan, StageSpec, int]] = {}  # place -> its plan, spec, node
        self.definitions: dict[int, Definition] = {}  # node -> its definition for a fork server
        self.lifeline_reader: Connection | None = None  # handed to later workers
        self.resizer: Resizer | None = None

    # -- starting ---------------------------------------------------------------------------

    def place(
        self, plan: WorkerPlan, spec: StageSpec, node_id: int, definition: StageSpec | Definition | None
    ) -> None:
        """Start the worker of one place now, or (``definition`` ``None``) leave it empty."""
        self.plans[plan.index] = (plan, spec, node_id)
        if definition is None:
            self.workers.append(Worker(plan.index, plan.label, EMPTY, done=True))
            return
        name = f"olympipe:{spec.name}:{plan.index}"
        process = self._ctx.Process(  # type: ignore[attr-defined]
            target=worker_main, args=(plan, definition), name=name, daemon=True
        )
        self.start_process(process)
        self.workers.append(Worker(plan.index, plan.label, process))

    def start_process(self, process: Any) -> None:
        """Start a process of the run's own start method (a first worker, the janitor)."""
        with without_main_replay() if self.method == "forkserver" else contextlib.nullcontext():
            process.start()
        # Only this run reaps its workers: multiprocessing polls every child from
        # whichever thread starts a process, and two threads reaping one worker
        # leave one of them without its exit code.
        _unregister_child(process)

    def definition_for(self, node_id: int, spec: StageSpec) -> Definition:
        """The stage's definition for a fork server, made once; :class:`Unpicklable` when
        the stage does not pickle (a global socket, a lock)."""
        definition = self.definitions.get(node_id)
        if definition is None:
            try:
                definition = self.definitions[node_id] = dumps_definition(spec, self.shm_prefix)
            except Exception as exc:
                raise Unpicklable(str(exc)) from exc
        return definition

    def check_replaceable(self, plan: Plan) -> None:
        """A stage whose workers are replaced (recycled, or after a crash) must pickle: the
        newcomer starts from a fork server. Said before the run, not as a death when it
        happens: recycling is refused; crash isolation is given up, with a warning."""
        for node in plan.stages:
            spec = node.spec
            assert isinstance(spec, StageSpec)
            if not spec.replaceable:
                continue
            try:
                self.definition_for(node.id, spec)
            except Unpicklable as exc:
                label = plan.labels[node.id]
                if spec.items_per_worker is not None:
                    raise PipelineError(
                        f"stage {label!r} cannot be recycled (max_items_per_worker): a new worker"
                        f" starts from a fork server, and the stage does not pickle: {exc}",
                        stage=label,
                    ) from exc.__cause__
                log.warning(
                    "stage %r does not pickle (%s): a worker that dies cannot be replaced, so a crash"
                    " ends the run instead of going to on_error",
                    label,
                    exc,
                )

    def grow(self, index: int) -> Worker:
        """Start a worker in an empty place of a resizable stage."""
        plan, spec, node_id = self.plans[index]
        worker = Worker(index, plan.label, self._spawn(plan, spec, node_id))
        self.workers[index] = worker
        return worker

    def _spawn(self, plan: WorkerPlan, spec: StageSpec, node_id: int, exitcode: int | None = None) -> Any:
        """Start a worker for ``plan`` from the fork server (or the run's own start method)."""
        definition = self.definition_for(node_id, spec)
        successor = replace(plan, recovering=exitcode, lifeline=self.lifeline_reader, watch_caller=False)
        process = self._respawn_ctx.Process(  # type: ignore[attr-defined]
            target=worker_main,
            args=(successor, definition),
            name=f"olympipe:{spec.name}:{plan.index}",
            daemon=True,
        )
        with without_main_replay() if self._respawn_method == "forkserver" else contextlib.nullcontext():
            process.start()
        _unregister_child(process)
        return process

    def make_resizer(self, stages: dict[int, tuple[list[int], int]], budget: int) -> Resizer:
        """The resizer of the resizable stages (node -> its places, how many start), which
        share ``budget`` workers; it starts newcomers with :meth:`grow`."""
        resizable = []
        for node_id, (places, starting) in stages.items():
            plan, spec, _node = self.plans[places[0]]
            movable = True
            try:
                self.definition_for(node_id, spec)  # a newcomer starts from it
            except Unpicklable as exc:
                movable = False
                log.warning("stage %r keeps its first count: it does not pickle (%s)", plan.label, exc)
            outputs = [target.channel for slot in plan.outputs for target in slot]
            resizable.append(
                Resizable(plan.label, places, set(places[:starting]), plan.retire, outputs, movable=movable)
            )
        self.resizer = Resizer(resizable, budget, self.counters.array, self.grow)
        return self.resizer

    # -- running ----------------------------------------------------------------------------

    def sentinels(self) -> dict[Any, Worker]:
        """The sentinel of every live process, for ``connection.wait``."""
        return {w.process.sentinel: w for w in self.workers if w.process.sentinel is not None}

    def drain(self, control: Control | None, *, raise_failures: bool = True) -> None:
        """Read every queued report: mark finished workers, raise the first failure.

        Teardown reads without raising, so finished workers are not terminated, and a
        report cut short by a dying worker does not stop the teardown."""
        if control is None:
            return
        channel = control.channel
        try:
            while channel.poll(0):
                message = control.recv()
                if isinstance(message, Done):
                    self.workers[message.worker].done = True
                elif isinstance(message, Retired) and message.shrink:
                    self.workers[message.worker].shrunk = True
                elif isinstance(message, Retired):
                    self.workers[message.worker].retired = True
                elif isinstance(message, Failure) and raise_failures:
                    raise message.to_error()
        except (OSError, EOFError):
            if raise_failures:
                raise

    def exited(self, worker: Worker, control: Control | None) -> Worker | None:
        """A worker's process ended: fine if it reported Done; replaced if it retired or
        died on one item of a stage that isolates crashes; its place emptied if it shrank
        its stage; else the run fails. Returns the worker that took its place, if any."""
        self.drain(control)
        if worker.done:
            return None
        worker.process.join()
        if worker.shrunk and self.resizer is not None:
            worker.process.close()
            self.workers[worker.index] = Worker(worker.index, worker.label, EMPTY, done=True)
            self.resizer.exited(worker.index)
            return None
        if worker.retired:
            return self._replace(worker, None, RECYCLED, None)
        exitcode = worker.process.exitcode
        plan, spec, _node = self.plans[worker.index]
        if plan.journal is not None and spec.isolates_crashes:
            held = journal.Journal(plan.journal, worker.index)
            marks = tuple(held.marks())
            item = int(self.counters.array[worker.index * FIELDS + CURRENT])
            if item >= 0 and any(mark == journal.PROCESSING for _port, _seq, mark in marks):
                for port, seq, mark in marks:
                    if mark == journal.PROCESSING:
                        held.remark(port, seq, journal.running(item))  # the worker said which item it ran
                marks = tuple(held.marks())
            # The same marks twice: the replacement died before doing anything (in its
            # constructor, say), and would again.
            if journal.recoverable(list(marks)) and marks != worker.marks:
                log.info("a worker of stage %r died (exit code %s): replacing it", worker.label, exitcode)
                return self._replace(worker, exitcode, CRASHES, marks)
        self._raise_dead(worker, exitcode)
        return None  # pragma: no cover - _raise_dead raises

    def raise_for_dead(self, by_sentinel: dict[Any, Worker], control: Control | None) -> None:
        """A sink closed without END: wait for the dead producer's sentinel and say which."""
        while by_sentinel:
            for sentinel in wait(list(by_sentinel)):
                successor = self.exited(by_sentinel.pop(sentinel), control)  # raises for the dead one
                if successor is not None:
                    by_sentinel[successor.process.sentinel] = successor
        raise PipelineError("a sink channel closed without an end of stream", stage="sink")

    def _replace(
        self,
        worker: Worker,
        exitcode: int | None,
        counter: int,
        marks: tuple[tuple[int, int, int], ...] | None,
    ) -> Worker:
        """Start a worker in ``worker``'s place; it takes over what ``worker`` held."""
        plan, spec, node_id = self.plans[worker.index]
        try:
            process = self._spawn(plan, spec, node_id, exitcode)
        except Unpicklable as exc:
            raise WorkerDied(
                stage=worker.label,
                exitcode=exitcode,
                detail=f"exit code {exitcode}; it cannot be replaced: its stage does not pickle ({exc})",
            ) from exc.__cause__
        # Joined already: its sentinel and the fork server's pipe go now, not at the end of
        # the run (a run may replace workers without end; each kept two descriptors).
        worker.process.close()
        self.counters.array[worker.index * FIELDS + counter] += 1
        fresh = Worker(worker.index, worker.label, process, marks=marks)
        self.workers[worker.index] = fresh
        return fresh

    def _raise_dead(self, worker: Worker, exitcode: int | None) -> None:
        started = self.counters.row(worker.index)[STARTED] > 0
        if self.method == "spawn" and exitcode == 1 and not started:
            raise PipelineError(
                f"a worker of stage {worker.label!r} failed while starting: with"
                ' start_method="spawn" each worker re-runs your script, so the code that'
                ' runs the pipeline must be under if __name__ == "__main__": (or leave'
                " start_method unset: the default needs no guard)",
                stage=worker.label,
            )
        raise WorkerDied(stage=worker.label, exitcode=exitcode)

    # -- stopping ---------------------------------------------------------------------------

    def stop(self, control: Control | None) -> None:
        """Let finished workers exit, terminate the others, kill what outlives the grace."""
        self.drain(control, raise_failures=False)  # workers that reported Done are spared
        for worker in self.workers:
            if not worker.done and worker.process.exitcode is None:
                worker.process.terminate()
        deadline = time.monotonic() + GRACE_SECONDS
        pending = {w.process.sentinel: w for w in self.workers if w.process.exitcode is None}
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for sentinel in wait(list(pending), left):
                del pending[sentinel]  # type: ignore[call-overload,unused-ignore]
        for worker in pending.values():
            log.debug("killing worker %s of stage %r", worker.index, worker.label)
            worker.process.kill()
        for worker in self.workers:
            worker.process.join()

    def close(self) -> None:
        """Close every process handle (all joined by :meth:`stop`) and forget the plans."""
        for worker in self.workers:
            worker.process.close()
        if self.lifeline_reader is not None:
            self.lifeline_reader.close()
        self.workers, self.plans, self.definitions = [], {}, {}


def _unregister_child(process: Any) -> None:
    children = getattr(multiprocessing.process, "_children", None)
    if isinstance(children, set):
        children.discard(process)
