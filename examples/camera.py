"""A simulated camera: numpy frames at a fixed rate through a per-frame pipeline.

    python examples/camera.py [--frames 90] [--fps 30]

The generator stands for a device read in the caller's process (a handle that cannot cross
processes). Each frame is denoised, reduced to a motion score and thresholded, one stage per
step. The frame carries its capture time, so the example reports the latency from capture to
the end of the pipeline (median and p99).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from olympipe import Pipeline

H, W = 240, 320


def camera(frames: int, fps: float) -> Iterator[tuple[float, np.ndarray]]:
    rng = np.random.default_rng(6)
    period = 1.0 / fps
    next_at = time.perf_counter()
    for i in range(frames):
        next_at += period
        time.sleep(max(0.0, next_at - time.perf_counter()))
        frame = rng.integers(0, 30, size=(H, W), dtype=np.uint8)
        frame[100:140, (i * 4) % W : (i * 4) % W + 40] = 255  # a moving bright block
        yield time.perf_counter(), frame


def denoise(item: tuple[float, np.ndarray]) -> tuple[float, np.ndarray]:
    t, frame = item
    f = frame.astype(np.float32)
    return t, (f[:-1, :-1] + f[1:, :-1] + f[:-1, 1:] + f[1:, 1:]) / 4


def motion_score(item: tuple[float, np.ndarray]) -> tuple[float, float]:
    t, frame = item
    return t, float((frame > 128).mean())


def alarm(item: tuple[float, float]) -> dict[str, Any]:
    t, score = item
    return {"captured": t, "score": score, "motion": score > 0.01}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=90)
    parser.add_argument("--fps", type=float, default=30.0)
    args = parser.parse_args(argv)
    latencies = []
    motions = 0
    for event in Pipeline(camera(args.frames, args.fps)).task(denoise).task(motion_score).task(alarm):
        latencies.append((time.perf_counter() - event["captured"]) * 1000)
        motions += event["motion"]
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"{len(latencies)} frames at {args.fps:g} fps, {motions} with motion")
    print(f"capture-to-result latency: median {p50:.2f} ms, p99 {p99:.2f} ms")
    return {"frames": len(latencies), "p50_ms": p50, "p99_ms": p99}


if __name__ == "__main__":
    main()
