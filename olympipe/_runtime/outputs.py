"""Where a worker's output chunks go: numbered, encoded once, written to every consumer."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from olympipe._runtime.credits import Target
from olympipe._runtime.meter import Meter
from olympipe._stages.base import Stage
from olympipe._transport import inherited, pool
from olympipe._transport.codec import Encoded, encode_chunk, send_encoded

if TYPE_CHECKING:
    from olympipe._runtime.worker import WorkerPlan


class Outputs:
    """Where a worker's chunks go, numbered by the one strategy its stage needs.

    * *keep*: a map stage's output chunk ``k`` answers input chunk ``k``;
    * *own*: a stateful stage numbers its non-empty output chunks 0, 1, 2, ...;
    * *renumber* (``ordered=False``): numbers taken from a counter shared by the stage's
      workers as chunks complete, under the lock that also covers the send, so numbers
      reach the consumer in order and its reorder buffer never waits.
    """

    def __init__(self, plan: WorkerPlan, slots: int, meter: Meter, holds: bool = False) -> None:
        self._consumers = plan.outputs
        # When the oldest source item behind the next output was read (0: unknown): the
        # chunk in hand's; a stage that holds items (``holds``: batch, reduce) keeps the
        # oldest since its last output.
        self._born = 0.0
        self._holds = holds
        self._slots = slots
        self._meter = meter
        self._own_seq = [0] * len(plan.outputs)
        self._renumber = plan.renumber
        self._prefix = plan.shm_prefix
        # per slot: buffers received by address go on by address when every consumer takes them
        self._by_address = [
            inherited.forward if all(t.takes_addresses for t in slot) else None for slot in plan.outputs
        ]
        # per slot: its one consumer is the caller's sink, which takes slots only while it
        # lends them out (see pool); else a result is copied into a segment of its own
        self._to_caller = [len(slot) == 1 and slot[0].to_caller for slot in plan.outputs]
        self.ended = False  # ended early: limit reached, timeout expired
        self.upto = 0  # the mark of what is sent next (see watermark.py)

    def saw(self, born: float) -> None:
        """A chunk whose oldest source item was read at ``born`` is in hand."""
        if not (self._holds and self._born) or (born and born < self._born):
            self._born = born

    def send(self, seq: int | None, produced: Any) -> None:
        """Send what one call of the stage produced; ``seq`` ``None``: number it here."""
        chunks = produced if self._slots > 1 else (produced,)
        born = self._born
        for slot, chunk in enumerate(chunks):
            if seq is None and not chunk:
                continue
            if self._holds and chunk:
                self._born = 0.0  # what it held has gone out
            self._meter.emitted(len(chunk))
            consumers = self._consumers[slot]
            if not consumers:
                continue
            # An array returned as it arrived (or changed in place) is forwarded, not copied,
            # when one consumer gets it (several would share one segment).
            by_address = self._by_address[slot]
            single = len(consumers) == 1
            slots = single and (not self._to_caller[slot] or pool.caller_lends(self._prefix))
            t0 = time.perf_counter()
            encoded = encode_chunk(chunk, self._prefix is not None, single, by_address, slots)
            t1 = time.perf_counter()
            for target in consumers:
                if target.window is not None:
                    target.window.acquire()  # a credit per chunk sent to a racing stage
            if seq is None:
                written = self._write(consumers, self._own_seq[slot], encoded, born)
                self._own_seq[slot] += 1
            elif self._renumber is None:
                written = self._write(consumers, seq, encoded, born)
            else:
                with self._renumber.get_lock():
                    written = self._write(consumers, self._renumber.value, encoded, born)
                    self._renumber.value += 1
            # Pickling the output and copying its large buffers into shared memory is the
            # stage's work: counted as blocked, a stage making large arrays read as held back
            # by the next one, and the busiest stage went unnamed.
            self._meter.encoded(t1 - t0 + written)
            self._meter.blocked(time.perf_counter() - t1 - written)

    def _write(self, consumers: list[Target], seq: int, encoded: Encoded, born: float) -> float:
        return sum(
            send_encoded(target.channel, target.port, seq, encoded, self._prefix, None, born, self.upto)
            for target in consumers
        )

    def end_if_exhausted(self, stage: Stage) -> bool:
        """``limit``/``timeout``: once the stage is exhausted, downstream ends at once;
        upstream is drained until its END. ``True`` the one time it ends."""
        if self.ended or not stage.exhausted:
            return False
        self.ended = True
        for slot in self._consumers:
            for target in slot:
                target.channel.producer_done()
        self._consumers = [[] for _ in self._consumers]
        return True
