"""Crash repair on Ray: the calls of a submission whose actor died, made again.

An actor of a crash-isolated group died under a submission: its calls are made again, in
graph order, on live actors (a replacement for a dead one), and ``entry.remade`` records
the values that stand for the lost refs. A chunk that kills its actor again is re-run item
by item, and the item that kills it goes to ``on_error`` as a :class:`~olympipe.WorkerDied`
(one crash per culprit, as on the local engine).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from olympipe._engines.ray.actor import Meta
from olympipe._engines.ray.actors import Actors, died
from olympipe._engines.ray.inflight import Call, InFlight
from olympipe._engines.ray.planning import Group
from olympipe._runtime.counters import CRASHES, FIELDS


class Repairer:
    """Makes the lost calls of a submission again (see the module's docstring)."""

    def __init__(
        self, ray: Any, actors: Actors, add_rows: Callable[[Group, int, list[list[float]]], None]
    ) -> None:
        self._ray = ray
        self._actors = actors
        self._add_rows = add_rows  # what a call's stages gained, added to an actor's rows

    def repair(self, entry: InFlight) -> None:
        """Make ``entry``'s lost calls again; their values go into ``entry.remade``."""
        ray = self._ray
        remade = entry.remade
        for call in entry.calls:
            if call.outs[-1] in remade:
                continue  # made again already
            args = tuple(remade.get(a, a) if isinstance(a, ray.ObjectRef) else a for a in call.args)
            if args == call.args and self._succeeded(call):
                continue
            if call.group.tail.spec.ordered_input:
                raise died(call.group, RuntimeError("a stateful stage's input was lost with a crashed actor"))
            values = self._remake(call, [ray.get(a) if isinstance(a, ray.ObjectRef) else a for a in args])
            remade.update(zip(call.outs, values, strict=True))

    def _succeeded(self, call: Call) -> bool:
        try:
            self._ray.get(call.outs[-1])
        except Exception as exc:
            # Its input was there (an upstream call that failed was made again first, and
            # its args replaced): this actor itself died.
            if self._actors.died(exc) and call.group.isolates_crashes:
                return False
            raise self._actors.translate(exc)
        return True

    def _remake(self, call: Call, args: list[Any]) -> list[Any]:
        """Make one call again on a live actor. A crash-isolated chunk goes item by item, so
        that the item that kills the actor again goes to ``on_error`` as a
        :class:`WorkerDied` (and counts as one crash); the figures of each item's call are
        added here, and the remade meta adds nothing more."""
        group, index = call.group, call.index
        self._actors.ensure_alive(group, index)
        if not (group.isolates_crashes and call.method == "process"):
            try:
                return self._call(group, index, *args, method=call.method)
            except Exception as exc:
                raise self._actors.translate(exc)
        chunks: list[list[Any]] = [[] for _ in range(group.slots)]
        exhausted = False
        for item in args[0]:
            try:
                result = self._call(group, index, [item])
            except Exception as exc:
                if not self._actors.died(exc):
                    raise self._actors.translate(exc)
                self._actors.replace(group, index, CRASHES)
                result = self._call(group, index, item, died(group, exc), method="recover")
            for slot in range(group.slots):
                chunks[slot].extend(result[slot])
            exhausted, rows, _more, held = result[-1]  # a crash-isolated group does not stream
            self._add_rows(group, index, rows)
        nothing: Meta = (exhausted, [[0.0] * FIELDS for _ in group.nodes], None, held)
        return [*chunks, nothing]

    def _call(self, group: Group, index: int, *args: Any, method: str = "process") -> list[Any]:
        handle = getattr(group.actors[index], method)
        return list(self._ray.get(handle.options(num_returns=group.slots + 1).remote(*args)))
