"""What a run did, stage by stage, and which stage limited it.

``Pipeline.stats()`` returns a :class:`RunStats` built from the per-worker counters that
workers keep in shared memory (no message is needed to read them, so it also works during
a run, from another thread). A stage whose workers were busy most of the time while the
others waited is the bottleneck; when no stage was busy most of the time, the stages were
waiting for the source.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

#: Below this share of busy time, no stage limits the run: the source does.
BUSY_BOTTLENECK_PCT = 50.0
#: A bottleneck busier than this gains from another worker (if a core is free for it).
BUSY_ADVICE_PCT = 80.0


@dataclass(frozen=True)
class StageStats:
    """One stage's figures, summed over its workers (percentages averaged over them)."""

    name: str
    workers: int
    items_in: int
    items_out: int
    errors: int
    busy_pct: float
    wait_in_pct: float
    blocked_out_pct: float
    peak_rss_mb: float
    cpu_pct: float
    retries: int = 0  # attempts repeated after a retry_on exception (retries=)
    crashes: int = 0  # workers that died and were replaced (on_error, a server)
    recycled: int = 0  # workers replaced after max_items_per_worker
    min_workers: int = 0  # the fewest workers the stage had during the run
    max_workers: int = 0  # the most workers the stage had during the run
    auto: bool = False  # count="auto": the engine sizes it (the hint never advises a count)
    dropped: int = 0  # items a flow policy (on_full=) dropped at its input

    def __post_init__(self) -> None:
        # A stage that was never resized had its count all along.
        if not self.min_workers:
            object.__setattr__(self, "min_workers", self.workers)
        if not self.max_workers:
            object.__setattr__(self, "max_workers", self.workers)


@dataclass(frozen=True)
class Latency:
    """Source-to-caller latency of the items that reached the caller, in seconds: from the
    moment the source yielded an item (the oldest of its chunk) to the moment the caller
    got it."""

    p50: float
    p95: float
    p99: float
    max: float

    def __str__(self) -> str:
        return " ".join(
            f"{k} {_ms(v)}"
            for k, v in (("p50", self.p50), ("p95", self.p95), ("p99", self.p99), ("max", self.max))
        )


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


@dataclass(frozen=True)
class RunStats:
    """The stages of a run in graph order, and the one that limits throughput."""

    rows: tuple[StageStats, ...]
    bottleneck: str
    wall_seconds: float
    source_items: int
    #: ``(seconds_since_start, stage_name, old_count, new_count)`` for each resize of an
    #: ``auto`` stage during the run.
    resizes: tuple[tuple[float, str, int, int], ...] = ()
    #: Source-to-caller latency so far (``None`` before any item arrived).
    latency: Latency | None = None

    @property
    def hint(self) -> str:
        """One sentence on what limits the run and what would help."""
        if self.bottleneck == "source":
            return "the source is the bottleneck: the stages spend most of their time waiting for input"
        row = next(r for r in self.rows if r.name == self.bottleneck)
        plural = "worker" if row.workers == 1 else "workers"
        cores = physical_cores()
        if row.busy_pct < BUSY_ADVICE_PCT or row.auto:
            advice = ""
        elif row.workers < cores:
            advice = f"; count={row.workers + 1} would help"
        else:
            advice = f"; it already has as many workers as this process has CPUs ({cores})"
        busy = f"{row.busy_pct:.0f} %"
        return f"stage {row.name!r} is busy {busy} of the time with {row.workers} {plural}{advice}"

    def _repr_html_(self) -> str:
        """The table for a notebook: the same figures, each stage's busy share drawn."""
        return _html_table(self)

    def __str__(self) -> str:
        header = (
            "stage",
            "workers",
            "in",
            "out",
            "errors",
            "retries",
            "crashes",
            "busy%",
            "wait-in%",
            "blocked%",
            "peak MB",
            "cpu%",
        )
        lines = [header]
        for r in self.rows:
            mark = " <" if r.name == self.bottleneck else ""
            lines.append(
                (
                    r.name + mark,
                    str(r.workers),
                    f"{r.items_in:,}",
                    f"{r.items_out:,}",
                    str(r.errors),
                    str(r.retries),
                    str(r.crashes),
                    f"{r.busy_pct:.0f}",
                    f"{r.wait_in_pct:.0f}",
                    f"{r.blocked_out_pct:.0f}",
                    f"{r.peak_rss_mb:.0f}",
                    f"{r.cpu_pct:.0f}",
                )
            )
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        text = [
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(line, widths, strict=True))
            )
            for line in lines
        ]
        text.append(f"{self.source_items:,} items from the source in {self.wall_seconds:.2f} s; {self.hint}")
        if self.latency is not None:
            text.append(f"latency from the source to the caller: {self.latency}")
        dropped = sum(r.dropped for r in self.rows)
        if dropped:
            text.append(f"{dropped:,} items dropped by a flow policy (on_full=)")
        return "\n".join(text)


def _html_table(stats: RunStats) -> str:
    """The stats as an HTML table: a bar per stage for its busy share, the bottleneck marked."""
    from html import escape

    titles = ("stage", "workers", "in", "out", "errors", "busy", "wait-in %", "blocked %", "peak MB", "cpu %")
    head = "".join(f"<th>{h}</th>" for h in titles)
    rows = []
    for r in stats.rows:
        mark = r.name == stats.bottleneck
        workers = f"{r.workers} auto" if r.auto else str(r.workers)
        bar = (
            f'<div style="background:{"#d9534f" if mark else "#5b9bd5"};height:0.8em;'
            f'width:{max(0.0, min(100.0, r.busy_pct)):.0f}%"></div>'
        )
        cells = (
            f"<td>{'<b>' if mark else ''}{escape(r.name)}{' (bottleneck)</b>' if mark else ''}</td>"
            f"<td>{workers}</td><td>{r.items_in:,}</td><td>{r.items_out:,}</td><td>{r.errors}</td>"
            f'<td style="min-width:8em">{bar}{r.busy_pct:.0f} %</td><td>{r.wait_in_pct:.0f}</td>'
            f"<td>{r.blocked_out_pct:.0f}</td><td>{r.peak_rss_mb:.0f}</td><td>{r.cpu_pct:.0f}</td>"
        )
        rows.append(f"<tr>{cells}</tr>")
    summary = f"{stats.source_items:,} items from the source in {stats.wall_seconds:.2f} s; {stats.hint}"
    caption = escape(summary)
    return f"<table><caption>{caption}</caption><tr>{head}</tr>{''.join(rows)}</table>"


def physical_cores() -> int:
    """Cores this process can use that each run a worker at full speed: the physical
    cores (hyper-threads share one), no more than its CPU affinity and cgroup quota allow."""
    import psutil  # imported when advice is asked for, not by every worker

    from olympipe._core.cpus import usable_cpus

    return min(psutil.cpu_count(logical=False) or os.cpu_count() or 1, usable_cpus())


def with_dropped(rows: list[StageStats], dropped: dict[str, int]) -> list[StageStats]:
    """``rows`` with the items each stage's input dropped (by stage name) added."""
    if not dropped:
        return rows
    return [replace(r, dropped=r.dropped + dropped[r.name]) if r.name in dropped else r for r in rows]


def pick_bottleneck(rows: tuple[StageStats, ...] | list[StageStats]) -> str:
    """The busiest stage, or ``"source"`` when no stage was busy most of the time."""
    if not rows:
        return "source"
    busiest = max(rows, key=lambda r: r.busy_pct)
    return busiest.name if busiest.busy_pct >= BUSY_BOTTLENECK_PCT else "source"
