"""``on_full=`` on a stage, on Ray: the driver drops when a chunk's turn at the stage comes.

A stage with a drop policy is held back (see ``planning.held_back``): its call for a
submission is made as that submission is collected, so the stage's previous chunk is done.
Then ``drop_oldest`` drops the chunk if a later one for the stage is ready already;
``drop_newest`` drops the chunks that became ready while an earlier one waited. The items
dropped are counted from the figures of the call that made the chunk, without fetching it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from olympipe._engines.ray.inflight import InFlight
from olympipe._engines.ray.planning import Group
from olympipe._runtime.counters import DROPPED, FIELDS, ITEMS_OUT, Counters


class Drops:
    """The drop decisions of one run's stages that have a drop policy."""

    def __init__(self, ray: Any, counters: Counters) -> None:
        self._ray = ray
        self._counters = counters
        self._skip: set[int] = set()  # ids of submissions a drop_newest stage drops at their turn

    def dropped(self, group: Group, entry: InFlight, ref: Any, waiting: Iterable[InFlight]) -> bool:
        """Whether ``group`` drops its chunk ``ref`` of ``entry``, whose turn it is;
        ``waiting``: the submissions not collected yet. A drop is counted."""
        later = [e for e in waiting if e.later is not None]
        if group.drops == "drop_oldest":
            drop = any(self._ready(r) for e in later for r in _inputs_of(group, e))
        else:
            drop = id(entry) in self._skip
            self._skip.discard(id(entry))
            if not drop:
                self._skip.update(id(e) for e in later if any(self._ready(r) for r in _inputs_of(group, e)))
        if drop:
            self._counters.array[group.rows[0][0] * FIELDS + DROPPED] += self._items_in(entry, ref)
        return drop

    def _ready(self, ref: Any) -> bool:
        if not isinstance(ref, self._ray.ObjectRef):
            return True  # a source's chunk, in the driver already
        ready, _ = self._ray.wait([ref], num_returns=1, timeout=0)
        return bool(ready)

    def _items_in(self, entry: InFlight, ref: Any) -> int:
        """How many items a chunk holds (a ref a call of ``entry`` made, or a source chunk):
        from the making call's figures, without fetching the chunk."""
        if not isinstance(ref, self._ray.ObjectRef):
            return len(ref)
        for call in entry.calls:
            if any(out is ref for out in call.outs[:-1]):
                meta = entry.remade.get(call.outs[-1]) or self._ray.get(call.outs[-1])
                rows = meta[1]
                return int(rows[-1][ITEMS_OUT])
        return len(self._ray.get(ref))


def _inputs_of(group: Group, entry: InFlight) -> list[Any]:
    assert entry.later is not None
    return [r for upstream, slot in group.head.inputs for r in entry.later.get((upstream.id, slot), [])]
