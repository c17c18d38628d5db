"""How far a worker's output has got along the source, for resumable runs.

Every frame carries ``upto`` (see the channel's header): once it and every earlier frame of
its stream are in, each source item before that position has sent all it produced on this
stream. The feeder marks a chunk with the position after its last item. A map stage passes
its input's mark on; ``explode`` marks the parts of a chunk with the position before it
until the chunk is done. A stage that holds items (``batch``) can only claim the position
where the chunk of its oldest held item began: :class:`Watermark` keeps that account.
"""

from __future__ import annotations

from collections import deque

MOST_CHUNKS = 256  # chunks kept on account; beyond, the oldest but one merge into the oldest


class Watermark:
    """The mark of a stateful stage's output (its input read in order on every port)."""

    __slots__ = ("_chunks", "_last", "_taken")

    def __init__(self, ports: int) -> None:
        self._last = [0] * ports  # per port: the mark of the last chunk taken
        self._taken = 0  # items taken so far, every port
        # (items taken before a chunk, the mark before it) of chunks whose items may be held
        self._chunks: deque[tuple[int, int]] = deque()

    def took(self, port: int, upto: int, items: int) -> None:
        """The stage is given a chunk of ``items`` items marked ``upto`` from ``port``."""
        self._chunks.append((self._taken, min(self._last)))
        if len(self._chunks) > MOST_CHUNKS:
            # A stage that holds everything (reduce) would grow this without end. The second
            # chunk merges into the first: an item held there then claims the first one's
            # mark, an earlier position, so the merge can only claim less.
            del self._chunks[1]
        self._taken += items
        if upto > self._last[port]:
            self._last[port] = upto

    @property
    def tracked(self) -> int:
        """How many chunks it keeps account of (at most :data:`MOST_CHUNKS`)."""
        return len(self._chunks)

    def after(self, held: int) -> int:
        """The mark of what the stage sends now, holding the last ``held`` items it took."""
        if held <= 0:
            self._chunks.clear()
            return min(self._last)
        oldest = self._taken - held  # the index, among items taken, of the oldest one held
        chunks = self._chunks
        while len(chunks) > 1 and chunks[1][0] <= oldest:
            chunks.popleft()
        return chunks[0][1] if chunks else min(self._last)
