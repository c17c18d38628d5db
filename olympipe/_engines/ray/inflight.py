"""What the Ray driver keeps of each submission until it is collected."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from olympipe._engines.ray.planning import Group


@dataclass
class Call:
    """One actor call of a submission: enough to make it again after a crash."""

    group: Group
    index: int  # which actor of the group
    method: str  # "process", "finish" (a flush) or "more" (the rest of a streaming chunk)
    args: tuple[Any, ...]
    outs: list[Any]  # a ref per output slot, then the meta ref


@dataclass(frozen=True)
class Resume:
    """The rest of a streaming chunk: actor ``index`` of ``group`` holds it as ``key``."""

    group: Group
    index: int
    key: int


@dataclass
class InFlight:
    """One submission: the refs each sink collects, and every call's meta ref."""

    sinks: list[tuple[int, Any]]
    calls: list[Call] = field(default_factory=list)
    remade: dict[Any, Any] = field(default_factory=dict)  # a ref lost in a crash -> its value
    # Calls held back until this submission is collected (see planning.held_back):
    later: dict[tuple[int, int], list[Any]] | None = None  # the refs they read
    finishing: Group | None = None
    resuming: Resume | None = None
    open_groups: set[int] = field(default_factory=set)  # ids of the held-back groups still open
    source_items: int = 0
    born: float = 0.0  # when the oldest source item behind it was read (0: unknown)
    upto: int = 0  # the source items read up to its chunk's last one (``resume=``)
    since: int = 0  # ... up to the item before its chunk's first one
    number: int = -1  # its source chunk's number (-1: a flush or a continuation)

    @property
    def metas(self) -> list[tuple[Group, int, Any]]:
        """``(group, actor index, meta ref)`` of every call."""
        return [(call.group, call.index, call.outs[-1]) for call in self.calls]

    def refs(self) -> list[Any]:
        """Every ref the driver collects for it: the sinks', then the metas."""
        return [ref for _sink, ref in self.sinks] + [meta for _group, _index, meta in self.metas]
