"""The controller of ``count="auto"``: how many workers each auto stage should have now.

A pure function of what the workers measured over the last window, so that it is tested
without processes and the same on every engine that can resize. Each window it reads, per
auto stage (a fused group counts as one), its live workers and the seconds they spent busy,
waiting for input and blocked on output, and proposes counts:

* **Only when a stage limits the run.** If no auto stage is busy most of the time (the
  source, the caller or a fixed stage sets the pace), moving workers gains nothing: the
  counts stay.
* **Proportional to the work** (after DS2, Flink's autoscaler): a stage's demand is the
  cores' worth of work it did per second; the budget is shared out in proportion, one
  worker at least each, at most the stage's slots. A limiting stage did less than it
  would with more workers, so its demand is counted as if it had one more.
* **Hysteresis.** A stage changes by at most one step per window (as Ray Data's actor-pool
  autoscaler does). A step that goes the way the stage last went (or its first step) is
  taken as soon as a window asks for it; a step back needs the same new count from
  :data:`PATIENCE` windows in a row. So a run reaches its counts without waiting, and a
  steady workload settles and never oscillates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

WINDOW_SECONDS = 0.5  # how often the counters are read
PATIENCE = 2  # windows a new count must persist before it is applied
BUSY_LIMITING = 0.8  # busy share above which a stage limits the run
BLOCKED_LIMITED = 0.2  # blocked share above which a stage is held back by the next one


@dataclass(frozen=True)
class Load:
    """One auto stage over one window."""

    workers: int  # live workers during the window
    slots: int  # the most it may have
    busy: float  # seconds, summed over its workers
    waited: float  # seconds waiting for input, summed
    blocked: float  # seconds blocked on output, summed


@dataclass
class Controller:
    """Proposes counts for the auto stages, within ``budget`` workers for all of them."""

    budget: int
    patience: int = PATIENCE
    _pending: list[tuple[int, int]] = field(default_factory=list)  # per stage: (target, windows seen)
    _went: list[int] = field(default_factory=list)  # per stage: its last step, +1 or -1 (0: none yet)

    def decide(self, loads: list[Load], seconds: float) -> list[int]:
        """The count each stage should move to now (its current count: no change)."""
        current = [load.workers for load in loads]
        if len(self._pending) != len(loads):
            self._pending = [(c, 0) for c in current]
            self._went = [0] * len(loads)
        targets = self._targets(loads, seconds) if seconds > 0 else current
        out = []
        for i, (load, target) in enumerate(zip(loads, targets, strict=True)):
            if target == load.workers:
                self._pending[i] = (target, 0)
                out.append(load.workers)
                continue
            seen = self._pending[i][1] + 1 if self._pending[i][0] == target else 1
            self._pending[i] = (target, seen)
            step = 1 if target > load.workers else -1
            onward = self._went[i] in (0, step)
            if onward or seen >= self.patience:
                out.append(load.workers + step)
                self._pending[i] = (target, 0)
            else:
                out.append(load.workers)
        decided = _within(out, current, self.budget)
        for i, (new, old) in enumerate(zip(decided, current, strict=True)):
            if new != old:
                self._went[i] = 1 if new > old else -1
        return decided

    def _targets(self, loads: list[Load], seconds: float) -> list[int]:
        current = [load.workers for load in loads]
        limiting = [
            load.busy >= BUSY_LIMITING * load.workers * seconds
            and load.blocked < BLOCKED_LIMITED * load.workers * seconds
            for load in loads
        ]
        if not any(limiting):
            return current
        demand = [
            load.busy / seconds * ((load.workers + 1) / load.workers if lim else 1.0)
            for load, lim in zip(loads, limiting, strict=True)
        ]
        return share(demand, [load.slots for load in loads], self.budget)


def share(demand: list[float], slots: list[int], budget: int) -> list[int]:
    """``budget`` workers shared in proportion to ``demand``: one at least each, at most
    ``slots``, largest remainders first."""
    n = len(demand)
    counts = [1] * n
    left = budget - n
    total = sum(demand)
    if left <= 0 or total <= 0:
        return counts
    ideal = [budget * d / total for d in demand]
    while left > 0:
        # the stage furthest below its ideal share that still has a free slot
        candidates = [i for i in range(n) if counts[i] < slots[i]]
        if not candidates:
            break
        best = max(candidates, key=lambda i: ideal[i] - counts[i])
        if ideal[best] - counts[best] <= 0:
            break
        counts[best] += 1
        left -= 1
    return counts


def _within(proposed: list[int], current: list[int], budget: int) -> list[int]:
    """Shrinks always; grows only while the total stays within the budget, first come."""
    total = sum(min(p, c) for p, c in zip(proposed, current, strict=True))
    out = []
    for p, c in zip(proposed, current, strict=True):
        if p > c:
            grow = min(p - c, max(0, budget - total))
            out.append(c + grow)
            total += c + grow - min(p, c)
        else:
            out.append(p)
    return out
