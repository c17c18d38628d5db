"""Several per-item stages run as one: each chunk goes through them in turn, in one worker.

A hop between two processes costs a pickle, a pipe write and a read; when a stage's work per
item is smaller than that (or its items are megabyte images), running the stages back to
back in the same worker is faster than giving each its own. The engine fuses adjacent
``count="auto"`` stages this way (see ``olympipe/_core/tuning.py``); each member still
reports its own figures through the callback the worker binds with
:meth:`FusedStage.bind_recorder`, so ``stats()`` shows every stage on its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from olympipe._stages.base import ItemFailed, ParallelSpec, Stage, StageSpec

#: ``record(member, items_in, items_out, busy_seconds, errors, retried)``: one member's
#: figures for one chunk (errors and retried are that member's totals so far).
Recorder = Callable[[int, int, int, float, int, int], None]


class FusedStage(Stage):
    """The members' stages, applied one after the other to each chunk."""

    def __init__(self, spec: FusedSpec) -> None:
        self._labels = spec.labels
        self._stages = [member.make() for member in spec.members]
        self._record: Recorder | None = None

    def bind_recorder(self, record: Recorder) -> None:
        """Report each member's figures through ``record`` after every chunk."""
        self._record = record

    def open(self) -> None:
        opened: list[Stage] = []
        try:
            for stage in self._stages:
                stage.open()
                opened.append(stage)
        except BaseException:
            for stage in reversed(opened):
                try:
                    stage.close()
                except Exception:  # the first error is the one reported
                    pass
            raise

    def process(self, items: list[Any]) -> list[Any]:
        out = items
        record = self._record
        for index, stage in enumerate(self._stages):
            if not out:
                break
            t0 = time.perf_counter()
            count_in = len(out)
            try:
                out = stage.process(out)
            except ItemFailed as exc:
                exc.stage = self._labels[index]
                raise
            finally:
                self.errors = sum(s.errors for s in self._stages)
                self.retried = sum(s.retried for s in self._stages)
            if record is not None:
                record(index, count_in, len(out), time.perf_counter() - t0, stage.errors, stage.retried)
        return out

    def close(self) -> None:
        first: BaseException | None = None
        for index, stage in enumerate(self._stages):
            try:
                stage.close()
            except Exception as exc:
                if first is None:
                    first = ItemFailed(None, has_item=False)
                    first.stage = self._labels[index]
                    first.__cause__ = exc
        if first is not None:
            raise first


@dataclass(frozen=True)
class FusedSpec(ParallelSpec):
    """Adjacent per-item stages (``members``, named ``labels``) run in the same workers."""

    members: tuple[StageSpec, ...] = ()
    labels: tuple[str, ...] = ()

    per_item: ClassVar[bool] = True

    @property
    def one_to_one(self) -> bool:  # type: ignore[override]
        return all(m.one_to_one for m in self.members)

    def make(self) -> Stage:
        return FusedStage(self)
