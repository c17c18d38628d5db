"""Helpers shared by the benchmarks: timing, CPU burn, machine facts, peer interpreters."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
# olympipe's default start method is fork only while the caller has a single thread; a
# baseline such as mpire leaves tqdm's monitor thread running, which would switch later
# runs to forkserver. Every benchmark therefore names the start method, as it does for Pool.
OLYMPIPE2_PYTHON = HERE / "_venv_olympipe2" / "bin" / "python"


def median_time(fn: Callable[[], Any], reps: int) -> float:
    """Median wall time of ``reps`` calls of ``fn``."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def burn(seconds: float) -> None:
    """Busy-loop on the CPU for about ``seconds``."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def inc(x: int) -> int:
    return x + 1


def tree_pss_mb() -> float:
    """PSS of this process and all its children, in MB. PSS, not RSS: forked children share
    their parent's pages, and summing RSS would count those pages once per process."""
    import psutil

    me = psutil.Process()
    total = me.memory_full_info().pss
    for child in me.children(recursive=True):
        try:
            total += child.memory_full_info().pss
        except psutil.Error:
            pass
    return float(total) / 2**20


def machine() -> str:
    system = f"{platform.system()} {platform.machine()}"
    return f"{os.cpu_count()} cores, Python {platform.python_version()}, {system}"


def run_peer(
    script: str, *args: str, python: Path = OLYMPIPE2_PYTHON, env: dict[str, str] | None = None
) -> dict[str, Any] | None:
    """Run ``script`` as a fresh process under ``python`` (olympipe 2.2.0's interpreter unless
    told otherwise: ``sys.executable`` runs the same script on this olympipe), with ``env``
    added to the environment; its last stdout line is JSON."""
    if not python.exists():
        return None
    proc = subprocess.run(
        [str(python), str(HERE / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=str(HERE),
        env={**os.environ, **(env or {})},
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-2000:])
        return None
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def paired(plain: Callable[[], None], other: Callable[[], None], reps: int) -> tuple[float, float, float]:
    """Median time of ``plain``, median time of ``other``, and the median of the pairs'
    ratios (plain / other: above 1, the other was faster); the runs alternate, so a drift
    of the shared machine hits both alike."""
    a, b = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        plain()
        a.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        other()
        b.append(time.perf_counter() - t0)
    return (
        statistics.median(a),
        statistics.median(b),
        statistics.median(x / y for x, y in zip(a, b, strict=True)),
    )


class Section:
    """One benchmark's table for RESULTS.md."""

    def __init__(self, title: str, goal: str) -> None:
        self.title = title
        self.goal = goal
        self.rows: list[tuple[str, str, str]] = []
        self.notes: list[str] = []

    def row(self, name: str, value: str, ratio: str = "") -> None:
        self.rows.append((name, value, ratio))
        print(f"  {name:<44} {value:>18} {ratio}", flush=True)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  -> {text}", flush=True)

    def markdown(self) -> str:
        lines = [
            f"## {self.title}",
            "",
            f"Goal: {self.goal}",
            "",
            "| run | result | ratio |",
            "|---|---:|---:|",
        ]
        lines += [f"| {a} | {b} | {c} |" for a, b, c in self.rows]
        if self.notes:
            lines.append("")
            lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"
