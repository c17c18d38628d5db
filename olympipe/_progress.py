"""Progress display: one tqdm bar per stage, drawn by one parent thread from shared counters.

Workers never touch a bar; they only add to their counters. A thread of the caller reads
the counters every :data:`REFRESH_SECONDS` and moves the bars, so the cost to the pipeline
is a few memory reads per refresh. When stderr is not a terminal (a log file, CI, captured
output) cursor movements would garble it: each stage's meter is written as a plain line
every :data:`PLAIN_SECONDS` instead, and once more at the end with the final count.

The bars use a tqdm subclass with ``monitor_interval = 0``: tqdm's own monitor thread would
otherwise outlive the run, and a caller with a live thread no longer forks by default.

In a notebook (an IPython kernel) neither bars nor lines read well: bars need ipywidgets
and a front end that draws them, and terminal bars stack a snapshot per refresh. There the
display is the stats table itself (HTML, with a text form for front ends without HTML),
replaced in place every :data:`NOTEBOOK_SECONDS` through IPython's display handles.
"""

from __future__ import annotations

import importlib
import shutil
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from olympipe._graph import Plan
from olympipe.stats import RunStats

REFRESH_SECONDS = 0.2
PLAIN_SECONDS = 5.0
NOTEBOOK_SECONDS = 0.5


def _bar_class() -> Any:
    """tqdm, imported on first use (it costs ~30 ms at import, and asyncio with it)."""
    from tqdm.auto import tqdm

    class _Bar(tqdm):  # type: ignore[type-arg]
        monitor_interval = 0

    return _Bar


class Progress:
    """Bars (or log lines) for the stages of one run."""

    def __init__(
        self, read: Callable[[], RunStats], totals: dict[str, int | None], latency: bool = False
    ) -> None:
        self._read = read
        self._totals = totals
        self._latency = latency  # show the p50 latency on the last bar (a live source)
        self._stop = threading.Event()
        self._bars: dict[str, Any] = {}
        self._notebook = _notebook_display()  # IPython's display functions in a kernel
        self._plain = self._notebook is None and not _is_terminal()
        self._handle: Any = None
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="olympipe-progress", daemon=True)

    def start(self) -> None:
        """Start refreshing."""
        if self._notebook is not None:
            self._handle = self._notebook(_Table(self._read()), display_id=True)
        elif not self._plain:
            bar_class = _bar_class()
            for position, (name, total) in enumerate(self._totals.items()):
                # A terminal that reports no size (a bare pty) would hide every bar.
                size = shutil.get_terminal_size((100, 20))
                self._bars[name] = bar_class(
                    total=total,
                    desc=name,
                    unit="it",
                    position=position,
                    leave=True,
                    ncols=size.columns or 100,
                    nrows=max(size.lines, len(self._totals) + 1),
                )
        self._thread.start()

    def close(self) -> None:
        """A last refresh, then close the bars; idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._refresh(final=True)
        for bar in self._bars.values():
            bar.close()

    def _loop(self) -> None:
        every = NOTEBOOK_SECONDS if self._notebook else PLAIN_SECONDS if self._plain else REFRESH_SECONDS
        while not self._stop.wait(every):
            self._refresh(final=False)

    def _refresh(self, final: bool) -> None:
        stats = self._read()
        if self._notebook is not None:
            if self._handle is not None:
                self._handle.update(_Table(stats))
            return
        if self._plain:
            elapsed = time.monotonic() - self._started
            lines = []
            for row in stats.rows:
                mark = " (bottleneck)" if row.name == stats.bottleneck else ""
                if row.auto:
                    mark = f" [x{row.workers} auto]{mark}"
                if row.dropped:
                    mark = f" [{row.dropped:,} dropped]{mark}"
                total = self._totals.get(row.name)
                lines.append(
                    _format_meter(row.items_in, total, elapsed, ncols=100, prefix=row.name, unit="it") + mark
                )
            if self._latency and stats.latency is not None:
                lines.append(f"latency p50 {stats.latency.p50 * 1000:.0f} ms")
            sys.stderr.write("\n".join(lines) + "\n")
            sys.stderr.flush()
            return
        last = stats.rows[-1].name if stats.rows else None
        for row in stats.rows:
            bar = self._bars.get(row.name)
            if bar is None:
                continue
            bar.n = row.items_in
            notes = [f"x{row.workers} auto"] if row.auto else []
            if row.dropped:
                notes.append(f"{row.dropped:,} dropped")
            if row.name == stats.bottleneck:
                notes.append("bottleneck")
            if self._latency and row.name == last and stats.latency is not None:
                notes.append(f"latency p50 {stats.latency.p50 * 1000:.0f} ms")
            bar.set_postfix_str(", ".join(notes), refresh=False)
            bar.refresh()


class _Table:
    """What a notebook shows: the stats table, as HTML and as text."""

    def __init__(self, stats: RunStats) -> None:
        self._stats = stats

    def _repr_html_(self) -> str:
        return self._stats._repr_html_()

    def __repr__(self) -> str:
        return str(self._stats)


def _notebook_display() -> Callable[..., Any] | None:
    """IPython's ``display`` when running in a kernel, else None."""
    if "ipykernel" not in sys.modules:
        return None
    try:
        module = importlib.import_module("IPython.display")
    except ImportError:
        return None
    display: Callable[..., Any] = module.display
    return display


def _is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def bar_totals(plan: Plan) -> dict[str, int | None]:
    """Each stage's expected item count: the source's length while every stage on the way
    maps one item to one item, else unknown."""
    known: dict[int, int | None] = {}
    totals: dict[str, int | None] = {}
    for node in plan.nodes:
        if node.is_source:
            known[node.id] = plan.source_length(node)
            continue
        upstream = [known.get(n.id) for n, _slot in node.inputs]
        total = upstream[0] if len(upstream) == 1 else None
        totals[plan.labels[node.id]] = total
        known[node.id] = total if node.spec.one_to_one else None
    return totals


def streams_live(plan: Plan) -> bool:
    """Whether a source has no length (a generator, a camera, a socket): its run's progress
    shows the latency."""
    return any(plan.source_length(node) is None for node in plan.sources)


def _format_meter(n: int, total: int | None, elapsed: float, **kwargs: Any) -> str:
    from tqdm import tqdm

    text: str = tqdm.format_meter(n, total, elapsed, **kwargs)  # type: ignore[arg-type]  # None: no total
    return text
