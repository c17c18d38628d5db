"""Putting chunks back in sequence order.

Every chunk carries ``(port, seq)``: ``port`` says which input of a stage it arrived on (only
``gather`` has several), ``seq`` its number in that input's stream. Stateless stages map
chunk ``k`` to chunk ``k`` (empty when everything was filtered out, so numbering has no
holes), so whoever reads the output of ``count=N`` workers can restore the order.
"""

from __future__ import annotations

from typing import Any


class Reorder:
    """Releases chunks of each port in ``seq`` order; ports interleave in arrival order."""

    __slots__ = ("_next", "_pending")

    def __init__(self, ports: int) -> None:
        self._next = [0] * ports
        self._pending: list[dict[int, Any]] = [{} for _ in range(ports)]

    def push(self, port: int, seq: int, items: Any) -> list[tuple[int, Any]]:
        """Accept chunk ``seq`` of ``port`` (its items, or whatever stands for it); return
        ``(seq, chunk)`` for those now ready, in order."""
        expected = self._next[port]
        if seq != expected:
            self._pending[port][seq] = items
            return []
        ready = [(seq, items)]
        expected += 1
        pending = self._pending[port]
        while pending and expected in pending:
            ready.append((expected, pending.pop(expected)))
            expected += 1
        self._next[port] = expected
        return ready

    def next_seq(self, port: int) -> int:
        """The number of the next chunk ``port`` releases."""
        return self._next[port]

    def start_at(self, seqs: list[int]) -> None:
        """Continue a predecessor's order: the next chunk of each port."""
        self._next = list(seqs)

    def drop(self) -> dict[int, int]:
        """Forget every waiting chunk; how many each port had."""
        counts = {port: len(p) for port, p in enumerate(self._pending) if p}
        for pending in self._pending:
            pending.clear()
        return counts

    @property
    def buffered(self) -> int:
        """How many chunks wait for an earlier one."""
        return sum(len(p) for p in self._pending)
