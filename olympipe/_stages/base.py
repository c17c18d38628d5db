"""The stage protocol shared by every operator, and the spec that describes one."""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol


class ItemFailed(Exception):
    """Raised by a stage when user code failed on ``item``; ``__cause__`` is the error."""

    def __init__(self, item: object, *, has_item: bool = True) -> None:
        super().__init__("user code failed on an item")
        self.item = item
        self.has_item = has_item
        self.stage: str | None = None  # a member of fused stages: which one failed


class ItemProbe(Protocol):
    """Where a chunk re-run item by item says which item it is at, so that a death names
    the item that caused it (the engine keeps it where a replacement finds it)."""

    def running(self, index: int) -> None:
        """Item ``index`` of the chunk runs now."""

    def recovering(self, index: int) -> None:
        """Item ``index``, known to kill a worker, is handed to ``on_error`` now."""


class Stage:
    """One worker's instance of an operator.

    The worker calls :meth:`open` once, :meth:`process` for each input chunk,
    :meth:`finish` once after a clean end of stream (to flush state), and :meth:`close`
    always, also after an error. Time-driven stages also return a :meth:`deadline`, at which
    the worker calls :meth:`tick` even when no input arrived. A stage that has nothing more
    to say (``limit`` reached, ``timeout`` expired) sets :attr:`exhausted`; the worker then
    ends its output stream and lets the upstream stages be stopped.

    Stages with several outputs (``split``) return a tuple of chunks, one per output.
    """

    exhausted: bool = False
    errors: int = 0  # items whose user code failed for good
    retried: int = 0  # attempts repeated after a retry_on exception
    streams: bool = False  # has :meth:`stream`

    def open(self) -> None:
        """Acquire resources (build a class instance, open a cache); called in the worker."""

    def process(self, items: list[Any]) -> Any:
        """Turn one input chunk into one output chunk (possibly empty)."""
        raise NotImplementedError

    def stream(self, items: list[Any]) -> Generator[list[Any], None, None]:
        """:meth:`process` in parts sent on as they come (a stage that :attr:`streams`), for a
        worker that numbers its output chunks itself."""
        yield self.process(items)

    def finish(self) -> Any:
        """What remains to emit after a clean end of stream (a last batch, a fold)."""
        return []

    def held(self) -> int:
        """How many of the last items it was given the stage holds, not yet sent on (a
        batch filling up); what a resumable run may not count as done."""
        return 0

    def close(self) -> None:
        """Release resources; always called, also after an error."""

    def deadline(self) -> float | None:
        """The ``time.monotonic()`` at which :meth:`tick` must run, or ``None``."""
        return None

    def tick(self, now: float) -> Any:
        """Called at or after :meth:`deadline`; returns a chunk to emit."""
        return []

    def rerun(
        self,
        items: list[Any],
        died: Exception,
        culprits: dict[int, Exception],
        probe: ItemProbe,
    ) -> Any:
        """Run again, item by item, a chunk whose worker died (``died`` says how).

        ``probe.running(i)`` is called before item ``i`` runs, so that a death names it;
        ``culprits`` are the items known to kill a worker: each becomes :meth:`recover`'s
        answer, ``probe.recovering(i)`` first."""
        out: list[Any] = []
        for index, item in enumerate(items):
            if index in culprits:
                probe.recovering(index)
                out.extend(self.recover(item, culprits[index]))
            else:
                probe.running(index)
                out.extend(self.process([item]))
        return out

    def track_items(self, running: Callable[[int], None]) -> bool:
        """Call ``running(i)`` with the index in its chunk of each item before running it,
        so that a crash names its item; ``False`` when the stage cannot (items run
        concurrently, or it does not run items one by one)."""
        return False

    def recover(self, item: Any, died: Exception) -> list[Any]:
        """What an item that killed its worker becomes (``on_error``'s answer)."""
        raise ItemFailed(item) from died


@dataclass(frozen=True)
class StageSpec:
    """The build-time description of an operator, sent to each of its workers.

    Engines read what they need to know about an operator from these facts, never from
    its class:

    * ``ordered_input``: stateful (batch, reduce, limit, ...): one worker reads chunks in
      sequence order and numbers its own output. Otherwise chunk ``k`` maps to chunk ``k``.
    * ``per_item``: each item is handled on its own (task, filter, explode, ...): allowed in
      a server pipeline, and an engine may fuse neighbouring such stages into one call.
    * ``one_to_one``: exactly one output per input (progress totals carry through).
    * ``streams``: one input may give outputs without end (``explode``): its stage has
      :meth:`Stage.stream`, and an engine takes its outputs in bounded parts.
    * ``parallelism``: items in flight in one worker (``concurrency``).
    * ``renumbers_output``: outputs are numbered as they complete (``ordered=False``).
    * ``idle_timeout``: the stream ends after that many seconds without input (``timeout``).
    * ``isolates_crashes``: a dead worker is replaced and its item handed to ``on_error``.
    * ``items_per_worker``: a worker is replaced after that many items.
    """

    name: str

    ordered_input: ClassVar[bool] = False
    per_item: ClassVar[bool] = False
    one_to_one: ClassVar[bool] = False
    streams: ClassVar[bool] = False

    @property
    def count(self) -> int:
        """How many worker processes run this stage."""
        return 1

    @property
    def output_slots(self) -> int:
        """How many separate output streams the stage has."""
        return 1

    @property
    def parallelism(self) -> int:
        """How many items one worker works on at once."""
        return 1

    @property
    def renumbers_output(self) -> bool:
        """Whether outputs are numbered in completion order rather than input order."""
        return False

    @property
    def idle_timeout(self) -> float | None:
        """Seconds without input after which the stage ends its stream (``timeout``)."""
        return None

    @property
    def isolates_crashes(self) -> bool:
        """Whether a worker's death is one item's failure (``on_error``, a server)."""
        return False

    @property
    def items_per_worker(self) -> int | None:
        """Items after which a worker is replaced (``max_items_per_worker``)."""
        return None

    @property
    def replaceable(self) -> bool:
        """Whether the engine may replace this stage's workers during a run."""
        return self.isolates_crashes or self.items_per_worker is not None

    def make(self) -> Stage:
        """Build the stage; called inside the worker."""
        raise NotImplementedError


@dataclass(frozen=True)
class ParallelSpec(StageSpec):
    """A stateless spec that may run in several workers (``count=``).

    ``auto``: ``count="auto"``; the engine chooses ``workers`` (see ``_core/tuning.py``)."""

    workers: int = 1
    auto: bool = False
    on_full: str = "block"  # the flow policy of its input (olympipe/_core/flow.py)

    @property
    def count(self) -> int:
        return self.workers
