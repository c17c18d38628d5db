"""Latency: slow sources (an int every 20 ms through 3 stages, a camera frame every 30 ms through 2)."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from common import Section

from olympipe import Pipeline

N = 60
PERIOD = 0.020


def source() -> Iterator[float]:
    for _ in range(N):
        time.sleep(PERIOD)
        yield time.perf_counter()


def ident(x: float) -> float:
    return x


def camera_latencies() -> list[float]:
    """A 30 ms camera of 240x320 frames (examples/camera.py): denoised, then a 1 ms model."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "examples"))
    import camera

    lat = []
    frames = camera.camera(60, 1 / 0.030)
    stream = Pipeline(frames, start_method="fork").task(camera.denoise)
    for event in stream.task(camera.Model(1.0)):
        lat.append((time.monotonic() - event["captured"]) * 1000)
    return sorted(lat)


def main(reps: int) -> Section:
    s = Section("Latency: slow sources through 3 stages", "each item at the sink within 5 ms (median)")
    lat = []
    for _ in range(max(1, reps // 2)):
        for made in Pipeline(source(), start_method="fork").task(ident).task(ident).task(ident):
            lat.append((time.perf_counter() - made) * 1000)
    lat.sort()
    p50 = statistics.median(lat)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    s.row("one int every 20 ms: p50", f"{p50:.2f} ms")
    s.row("one int every 20 ms: p99", f"{p99:.2f} ms")
    cam = camera_latencies()
    s.row("camera, 240x320 frame every 30 ms: p50", f"{statistics.median(cam):.2f} ms")
    s.row("camera, 240x320 frame every 30 ms: p99", f"{cam[min(len(cam) - 1, int(len(cam) * 0.99))]:.2f} ms")
    return s
