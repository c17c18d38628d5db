"""``Pipeline(source, resume="progress.olympipe")``: a run that records which source items
are finished, so that the same script run again skips them.

An item is finished once everything it produced has been taken by the caller (see
``_runtime/watermark.py`` for how the engines know): yielded by iteration, or through the
last stage of a ``wait_for_completion()`` run. A terminal call that returns its results at
the end (``wait_for_results``...) finishes every item when it returns, and none before.

By position (a source that reads the same way again: a list, a range, a file's lines), the
progress is one number: every source item before it is finished. By ``resume_key(item)``
(a source whose order may change), it is the set of the finished items' keys, 8 bytes each.
A thread writes it as soon as the caller takes an output, then at most once per
:data:`WRITE_SECONDS`, less often when a write takes more than a tenth of that (a keyed
run's file grows with its items; see ``state.py``). After a ``kill -9`` the items run again
are those in flight and those finished since the last write (at-least-once).

Refused, before any work, with an error naming the stage: stages whose state covers the
whole stream or whose end depends on this run (``reduce``, ``checkpoint``, ``limit``,
``timeout``), ``ordered=False`` (outputs in completion order), drop policies, servers and
several sources. ``batch`` and ``temporal_batch`` are resumable: the items a batch held
when the run stopped run again.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import logging
import os
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from olympipe._engines.base import Around, Execution
from olympipe._graph import Plan, SourceSpec
from olympipe._resume.fingerprint import fingerprint
from olympipe._resume.state import KEY_BYTES, Progress, load, save
from olympipe._stages.base import StageSpec
from olympipe._stages.mapping import TaskSpec
from olympipe._stages.request import RequestBatchSpec
from olympipe._stages.stateful import LimitSpec, ReduceSpec, TimeoutSpec
from olympipe.errors import ProgressFileError
from olympipe.stats import RunStats

WRITE_SECONDS = 0.1
_log = logging.getLogger("olympipe")

_WHY_NOT = {
    ReduceSpec: "it folds the whole stream, and a resumed run would fold only the rest",
    LimitSpec: "it counts the items of one run",
    TimeoutSpec: "it ends the stream on this run's timing, leaving items unread",
    RequestBatchSpec: "it batches requests of a server",
}


def check_resumable(plan: Plan, keyed: bool) -> None:
    """Refuse, before any work, a graph whose run cannot be resumed.

    Raises:
        ValueError: a stage or source that cannot be resumed, named."""
    sources = plan.sources
    if len(sources) != 1:
        raise ValueError("resume= records the progress of one source; this graph reads several")
    spec = sources[0].spec
    assert isinstance(spec, SourceSpec)
    if spec.server:
        raise ValueError("resume= does not apply to a server pipeline")
    if spec.on_full != "block":
        raise ValueError(
            f"resume= needs every source item to be processed; on_full={spec.on_full!r} drops some"
        )
    for node in plan.stages:
        stage = node.spec
        assert isinstance(stage, StageSpec)
        label = plan.labels[node.id]
        why = next((text for kind, text in _WHY_NOT.items() if isinstance(stage, kind)), None)
        if isinstance(stage, TaskSpec) and not stage.ordered:
            why = "ordered=False delivers outputs out of source order"
        policy = getattr(stage, "on_full", "block")
        if policy != "block":
            why = f"on_full={policy!r} drops items"
        if why is not None:
            raise ValueError(f"stage {label!r} cannot be part of a resumable run: {why}")
    if not keyed and not replayable(spec.iterable):
        raise ValueError(
            f"resume= skips finished items by their position, but the source (a"
            f" {type(spec.iterable).__name__}) may not give the same items in the same order"
            " on the next run: pass resume_key=<a function giving each item's unique key>, or"
            " give a list, a range or an open file"
        )


def replayable(iterable: object) -> bool:
    """Whether the same script gets the same items in the same order from ``iterable``
    again: a sequence, a mapping, a file's lines (not a set, not an iterator)."""
    if isinstance(iterable, (Sequence, Mapping, io.IOBase)):
        return True
    return hasattr(iterable, "__len__") and hasattr(iterable, "__getitem__") and not _is_iterator(iterable)


def _is_iterator(value: object) -> bool:
    try:
        return iter(value) is value  # type: ignore[call-overload]
    except TypeError:
        return False


def key_digest(key: object) -> bytes:
    """The 8 bytes a finished item's ``resume_key`` is recorded as."""
    text = f"{type(key).__qualname__}:{key!r}".encode()
    return hashlib.blake2b(text, digest_size=KEY_BYTES).digest()


class _Rest:
    """The source past its first ``skip`` items (with a length when the source has one)."""

    def __init__(self, iterable: Iterable[Any], skip: int) -> None:
        self._iterable = iterable
        self._skip = skip

    def __iter__(self) -> Iterator[Any]:
        return itertools.islice(iter(self._iterable), self._skip, None)

    def __len__(self) -> int:
        return max(0, len(self._iterable) - self._skip)  # type: ignore[arg-type]


class _Unfinished:
    """The source without the items whose key is recorded as finished; the digest of each
    item it lets through waits in ``pending`` until that item is finished."""

    def __init__(self, iterable: Iterable[Any], key: Callable[[Any], Any], done: set[bytes]) -> None:
        self._iterable = iterable
        self._key = key
        self._done = done
        self.pending: deque[bytes] = deque()

    def __iter__(self) -> Iterator[Any]:
        done, pending, key = self._done, self.pending, self._key
        for item in self._iterable:
            digest = key_digest(key(item))
            if digest not in done:
                pending.append(digest)
                yield item


class Prepared:
    """A resumable run's progress so far, and the source it now reads."""

    def __init__(
        self, path: str, progress: Progress, feed: Iterable[Any] | None, keys: _Unfinished | None
    ) -> None:
        self.path = path
        self.progress = progress
        self.feed = feed  # what the source's feeder reads; None: the whole source
        self.keys = keys


def prepare(
    plan: Plan,
    path: str | os.PathLike[str],
    key: Callable[[Any], Any] | None,
    if_changed: bool,
) -> Prepared:
    """Check the graph and the progress file, and say what this run reads.

    Raises:
        ValueError: the graph cannot be resumed, or the file belongs to another graph.
        ProgressFileError: the file is not ours or is damaged."""
    check_resumable(plan, key is not None)
    where = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(where))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"resume={where!r}: the directory {directory!r} does not exist")
    digest = fingerprint(plan)
    stages = [plan.labels[n.id] for n in plan.stages]
    progress = load(where)
    if progress is not None and (progress.fingerprint != digest or progress.keyed != (key is not None)):
        if not if_changed:
            what = (
                f"stages then: {', '.join(progress.stages)}; now: {', '.join(stages)}"
                if progress.stages != stages
                else "the same stages, but the code or the parameters of one changed"
            )
            raise ProgressFileError(
                f"{where} records the progress of another graph ({what}). Delete it to start"
                " over, or pass resume_if_changed=True to go on from where it stopped"
            )
        progress.fingerprint, progress.stages = digest, stages
        progress.keyed = key is not None
        if progress.keyed:
            progress.done = 0
        else:
            progress.keys = set()
    if progress is None:
        progress = Progress(fingerprint=digest, keyed=key is not None, stages=stages)
    source = plan.sources[0].spec
    assert isinstance(source, SourceSpec)
    if key is not None:
        keys = _Unfinished(source.iterable, key, progress.keys)
        return Prepared(where, progress, keys, keys)
    feed = _Rest(source.iterable, progress.done) if progress.done else None
    return Prepared(where, progress, feed, None)


class Resumable(Around):
    """A run that records its progress in a file while it goes on (see the module)."""

    def __init__(self, run: Execution, prepared: Prepared) -> None:
        super().__init__(run)
        self._prepared = prepared
        self._base = prepared.progress.done  # by position: items finished in earlier runs
        self._moved = 0  # by key: finished items of this run already moved to the keys
        self._collecting = False
        self._complete = False
        self._saved: tuple[int, int, bool] | None = None
        self._lock = threading.Lock()
        self._taken = threading.Event()  # the caller took an output: the progress may have moved
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._write_loop, name="olympipe-progress", daemon=True)

    def collecting(self) -> None:
        """The terminal call returns every result at its end: no item is finished before."""
        self._collecting = True

    def start(self) -> None:
        """Start the run, and the thread that records its progress."""
        super().start()
        if self._writer.ident is None:
            self._writer.start()

    def events(self) -> Iterator[tuple[int, list[Any]]]:
        """The run's events; once they are all taken, the run is recorded as finished."""
        for event in super().events():
            yield event
            self._taken.set()
        self._complete = True
        self._record()

    def close(self) -> None:
        """Record the progress reached, then close the run."""
        self._stop.set()
        self._taken.set()
        if self._writer.ident is not None:
            self._writer.join()
        try:
            if self._complete or not self._collecting:
                self._record()
        except OSError as exc:
            _log.warning("olympipe: could not record the progress in %s: %s", self._prepared.path, exc)
        finally:
            super().close()

    def _write_loop(self) -> None:
        while True:
            self._taken.wait()
            if self._stop.is_set():
                return
            self._taken.clear()
            t0 = time.perf_counter()
            if not self._collecting:
                try:
                    self._record()
                except OSError as exc:
                    _log.warning(
                        "olympipe: could not record the progress in %s: %s", self._prepared.path, exc
                    )
                    return
            # At most one write per interval; a large file (a keyed run's digests) is written
            # less often, so that writing never takes more than a tenth of the time.
            if self._stop.wait(max(WRITE_SECONDS, 10 * (time.perf_counter() - t0))):
                return

    def _record(self) -> None:
        """Save the progress if it moved (from the writer thread, or at the end)."""
        with self._lock:
            progress = self._prepared.progress
            finished = self._run.finished()
            keys = self._prepared.keys
            if keys is not None:
                for _ in range(finished - self._moved):
                    progress.keys.add(keys.pending.popleft())
                self._moved = max(self._moved, finished)
            else:
                progress.done = self._base + finished
            if self._complete:
                progress.finished = True
                progress.keys = set()  # a finished run skips everything: no key is needed
            state = (progress.done, len(progress.keys), progress.finished)
            if state != self._saved:
                save(self._prepared.path, progress)
                self._saved = state


class AlreadyFinished:
    """The run of a graph whose progress file says it has finished: it does nothing."""

    def __init__(self, plan: Plan, path: str) -> None:
        self.plan = plan
        warnings.warn(
            f"{path} says this run has already finished: nothing to do (delete the file to run it again)",
            stacklevel=5,
        )

    def start(self) -> None:
        """Nothing to start."""

    def events(self) -> Iterator[tuple[int, list[Any]]]:
        """No events."""
        return iter(())

    def stats(self) -> RunStats:
        """Empty figures."""
        return RunStats(rows=(), bottleneck="source", wall_seconds=0.0, source_items=0)

    def end_sources(self, node_ids: set[int]) -> None:
        """Nothing to end."""

    def finished(self) -> int:
        """Nothing was read."""
        return 0

    def close(self) -> None:
        """Nothing to close."""


__all__ = ["AlreadyFinished", "Prepared", "Resumable", "prepare"]
