"""``trace="run.json"``: a run's timeline in the Chrome trace event format.

Perfetto (ui.perfetto.dev) and ``chrome://tracing`` open the file. A thread of the caller
samples the counters every worker keeps (busy, waiting for input, blocked on output,
crashes, recycling) every :data:`SAMPLE_SECONDS`; each sample becomes, on the worker's track,
consecutive complete events (``"ph": "X"``) named ``busy``, ``blocked_out`` and
``wait_in`` whose lengths are the worker's shares of that interval (so the spans of a track
never overlap and cover the worker's life from its start); a busy span's ``args`` say how
many chunks the worker took in it and the number of the last one in its input's order (on
Ray, the number of the source chunk it came from). Instant events mark a start,
a crash, a recycling, a drop (``on_full=``) and a resize. Tracks are grouped by stage (a
process per stage, a thread per worker). The caller is a process of its own with two
tracks: the feeder, with a counter of the source items read, and the sink, with an instant
per chunk delivered (its sink, its number in that sink's order, its items) and a counter of
the items delivered (both counters drawn at each sample). The file is bounded whatever the
run's length: the samples are kept in a ring of :data:`MAX_EVENTS` events, so a long run's
file holds its last stretch (the first event says when it begins).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from olympipe._engines.base import Around, Execution
from olympipe._runtime.counters import (
    BLOCKED_OUT,
    BUSY,
    CHUNKS,
    CRASHES,
    DROPPED,
    FIELDS,
    LAST_CHUNK,
    RECYCLED,
    STARTED,
    Counters,
)
from olympipe.stats import RunStats

SAMPLE_SECONDS = 0.05
MAX_EVENTS = 200_000  # about 20 MB of JSON
FEEDER, SINK = 1, 2  # the caller's tracks


def check_trace(path: object) -> None:
    """``path`` must be a str or path whose directory exists (or ``None``)."""
    if path is None:
        return
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"trace must be a path, got {type(path).__name__}")
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"trace: no such directory: {folder!r}")


class Traced(Around):
    """A run whose timeline is written to ``path`` when it closes."""

    def __init__(self, run: Execution, path: str | os.PathLike[str]) -> None:
        super().__init__(run)
        self._path = os.fspath(path)
        self._sampler: _Sampler | None = None

    def events(self) -> Iterator[tuple[int, list[Any]]]:
        """The run's events, each one noted on the sink's track as it is delivered."""
        numbers: dict[int, int] = {}
        for sink, chunk in super().events():
            if self._sampler is not None:
                number = numbers.get(sink, 0)
                numbers[sink] = number + 1
                self._sampler.delivered(sink, number, len(chunk))
            yield sink, chunk

    def start(self) -> None:
        super().start()
        if self._sampler is None:
            rows: Callable[[], list[tuple[str, int, int]]] = getattr(self._run, "trace_rows", lambda: [])
            counters: Counters | None = getattr(self._run, "counters", None)
            self._sampler = _Sampler(rows, counters, self._run.stats)
            self._sampler.start()

    def close(self) -> None:
        try:
            super().close()
        finally:
            sampler, self._sampler = self._sampler, None
            if sampler is not None:
                sampler.stop()
                with open(self._path, "w", encoding="utf-8") as out:
                    # one dumps(): dump() encodes piece by piece, several times slower
                    out.write(json.dumps(sampler.trace(), separators=(",", ":")))


class _Sampler(threading.Thread):
    def __init__(
        self,
        rows: Callable[[], list[tuple[str, int, int]]],
        counters: Counters | None,
        stats: Callable[[], RunStats],
    ) -> None:
        super().__init__(name="olympipe-trace", daemon=True)
        self._rows = rows
        self._counters = counters
        self._stats = stats
        self._halt = threading.Event()
        self._t0 = time.time()
        self._events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        self._last: dict[int, tuple[float, ...]] = {}  # row -> (t, fields...)
        self._stages: dict[str, int] = {}  # stage -> pid
        self._tracks: dict[int, tuple[int, int, str]] = {}  # row -> (pid, tid, name)
        self._resizes = 0
        self._delivered = 0

    def delivered(self, sink: int, number: int, items: int) -> None:
        """Chunk ``number`` of ``sink`` (``items`` items) reached the caller (its thread)."""
        self._delivered += items  # the counter is drawn at each sample (half the events)
        now = self._us(time.time())
        args = {"sink": sink, "chunk": number, "items": items}
        self._events.append(
            {"ph": "i", "s": "t", "name": "chunk", "pid": 0, "tid": SINK, "ts": now, "args": args}
        )

    def run(self) -> None:
        while not self._halt.wait(SAMPLE_SECONDS):
            self._sample()

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join()
        self._sample()

    def trace(self) -> dict[str, Any]:
        meta: list[dict[str, Any]] = [
            {"ph": "M", "name": "process_name", "pid": 0, "tid": 0, "args": {"name": "caller"}},
            {"ph": "M", "name": "thread_name", "pid": 0, "tid": FEEDER, "args": {"name": "feeder"}},
            {"ph": "M", "name": "thread_name", "pid": 0, "tid": SINK, "args": {"name": "sink"}},
        ]
        for stage, pid in self._stages.items():
            meta.append({"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": stage}})
            meta.append(
                {"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "args": {"sort_index": pid}}
            )
        for pid, tid, name in self._tracks.values():
            meta.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": name}})
        return {"traceEvents": meta + list(self._events), "displayTimeUnit": "ms"}

    def _us(self, t: float) -> float:
        return round((t - self._t0) * 1e6, 1)

    def _sample(self) -> None:
        now = time.time()
        try:
            stats = self._stats()
        except Exception:  # a run torn down under us: the next sample, or none
            return
        at = self._us(now)
        for name, tid, items in (("read", FEEDER, stats.source_items), ("delivered", SINK, self._delivered)):
            self._events.append(
                {"ph": "C", "name": name, "pid": 0, "tid": tid, "ts": at, "args": {"items": items}}
            )
        for t, stage, old, new in stats.resizes[self._resizes :]:
            pid = self._stage_pid(stage)
            self._events.append(
                {
                    "ph": "i",
                    "s": "p",
                    "name": f"resize {old} -> {new}",
                    "pid": pid,
                    "tid": 0,
                    "ts": self._us(self._t0 + t),
                }
            )
        self._resizes = len(stats.resizes)
        if self._counters is None:
            return
        array = self._counters.array
        for stage, position, row in self._rows():
            at = row * FIELDS
            started = float(array[at + STARTED])
            if not started:
                continue
            fields = (
                float(array[at + BUSY]),
                float(array[at + DROPPED]),
                float(array[at + BLOCKED_OUT]),
                float(array[at + CRASHES]),
                float(array[at + RECYCLED]),
                float(array[at + CHUNKS]),
            )
            pid, tid = self._track(stage, position, row)
            last = self._last.get(row)
            if last is None:
                self._events.append(
                    {"ph": "i", "s": "t", "name": "start", "pid": pid, "tid": tid, "ts": self._us(started)}
                )
                last = (max(started, self._t0), 0.0, 0.0, 0.0, fields[3], fields[4], 0.0)
            t_prev, busy0, dropped0, blocked0, crashes0, recycled0, chunks0 = last
            chunks = {"chunks": int(fields[5] - chunks0), "last chunk": int(array[at + LAST_CHUNK]) - 1}
            self._spans(pid, tid, t_prev, now, fields[0] - busy0, fields[2] - blocked0, chunks)
            for count, before, name in ((fields[3], crashes0, "crash"), (fields[4], recycled0, "recycled")):
                for _ in range(int(count - before)):
                    self._events.append(
                        {"ph": "i", "s": "t", "name": name, "pid": pid, "tid": tid, "ts": self._us(now)}
                    )
            if fields[1] > dropped0:
                dropped = int(fields[1] - dropped0)
                self._events.append(
                    {
                        "ph": "i",
                        "s": "t",
                        "name": f"dropped {dropped}",
                        "pid": pid,
                        "tid": tid,
                        "ts": self._us(now),
                    }
                )
            self._last[row] = (now, *fields)

    def _spans(
        self,
        pid: int,
        tid: int,
        start: float,
        end: float,
        busy: float,
        blocked: float,
        chunks: dict[str, int],
    ) -> None:
        """Busy, then blocked, then waiting: the worker's shares of ``[start, end)``; the busy
        span says how many chunks the worker took in it, and the number of the last."""
        length = max(0.0, end - start)
        busy, blocked = max(0.0, busy), max(0.0, blocked)
        if busy + blocked > length > 0:
            scale = length / (busy + blocked)
            busy, blocked = busy * scale, blocked * scale
        at = start
        for name, seconds in (("busy", busy), ("blocked_out", blocked), ("wait_in", length - busy - blocked)):
            if seconds < 1e-6 and not (name == "busy" and chunks["chunks"]):  # below a microsecond
                at += max(0.0, seconds)
                continue
            span: dict[str, Any] = {
                "ph": "X",
                "name": name,
                "pid": pid,
                "tid": tid,
                "ts": self._us(at),
                "dur": round(seconds * 1e6, 1),
            }
            if name == "busy" and chunks["chunks"]:
                span["args"] = chunks
            self._events.append(span)
            at += seconds

    def _stage_pid(self, stage: str) -> int:
        if stage not in self._stages:
            self._stages[stage] = len(self._stages) + 1
        return self._stages[stage]

    def _track(self, stage: str, position: int, row: int) -> tuple[int, int]:
        if row not in self._tracks:
            self._tracks[row] = (self._stage_pid(stage), position + 1, f"{stage} worker {position}")
        pid, tid, _name = self._tracks[row]
        return pid, tid
