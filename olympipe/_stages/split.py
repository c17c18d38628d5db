"""``split(fn, n)``: one input, ``n`` outputs; value ``i`` of ``fn(item)`` goes to output ``i``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from olympipe._stages.base import ItemFailed, Stage, StageSpec


class SplitArityError(ValueError):
    """``split``'s function returned a value that is not a tuple of ``n`` values."""


class SplitStage(Stage):
    """Routes each value of ``fn(item)`` to its own output; ``None`` values are skipped."""

    def __init__(self, fn: Callable[[Any], Any], n: int) -> None:
        self._fn = fn
        self._n = n

    def process(self, items: list[Any]) -> tuple[list[Any], ...]:
        n = self._n
        outs: tuple[list[Any], ...] = tuple([] for _ in range(n))
        for x in items:
            try:
                values = self._fn(x)
            except Exception as exc:
                raise ItemFailed(x) from exc
            if not isinstance(values, (tuple, list)) or len(values) != n:
                got = len(values) if isinstance(values, (tuple, list)) else type(values).__name__
                try:
                    raise SplitArityError(f"split function must return a tuple of {n} values, got {got}")
                except SplitArityError as exc:
                    raise ItemFailed(x) from exc
            for out, value in zip(outs, values, strict=True):
                if value is not None:
                    out.append(value)
        return outs

    def finish(self) -> tuple[list[Any], ...]:
        return tuple([] for _ in range(self._n))


@dataclass(frozen=True)
class SplitSpec(StageSpec):
    """``split(split_function, n)``."""

    fn: Callable[[Any], Any] = field(default=lambda x: (x,))
    n: int = 1

    @property
    def output_slots(self) -> int:
        return self.n

    def make(self) -> Stage:
        return SplitStage(self.fn, self.n)
