"""A live camera faster than its model: latency with and without a drop policy.

    python examples/camera.py [--frames 90] [--fps 30] [--model-ms 100]

The camera stands for a device read in the caller's process: it captures a frame every
1/fps seconds whether or not anyone reads it, and keeps what is not read yet in its
driver's buffer (each frame is stamped with the moment it was captured). The pipeline
denoises each frame and runs a "model" that takes ``--model-ms`` per frame: at 30 fps and
100 ms, three frames come for every one the model can take.

* With ``on_full="block"`` (the default) the pipeline reads the camera only as fast as the
  model goes: frames wait in the driver's buffer and the latency grows for as long as the
  camera runs.
* With ``on_full="drop_oldest"`` on the source and on the model's input, the camera is read
  at its own pace and the model always takes the newest frame waiting for it: the latency
  stays at about one model step, and ``stats()`` counts the frames dropped. (On the source
  alone it would not be enough here: frames would wait between the denoiser and the model.)
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from olympipe import Pipeline

H, W = 240, 320


def camera(frames: int, fps: float) -> Iterator[tuple[float, np.ndarray]]:
    """``(capture time, frame)``: frame ``i`` is captured at ``start + i / fps``; a reader
    that is late gets the frames it missed from the buffer, with their capture times."""
    rng = np.random.default_rng(6)
    start = time.monotonic()
    for i in range(frames):
        captured = start + i / fps
        time.sleep(max(0.0, captured - time.monotonic()))
        frame = rng.integers(0, 30, size=(H, W), dtype=np.uint8)
        frame[100:140, (i * 4) % W : (i * 4) % W + 40] = 255  # a moving bright block
        yield captured, frame


def denoise(item: tuple[float, np.ndarray]) -> tuple[float, np.ndarray]:
    t, frame = item
    f = frame.astype(np.float32)
    return t, (f[:-1, :-1] + f[1:, :-1] + f[:-1, 1:] + f[1:, 1:]) / 4


class Model:
    """Stands for a model on a GPU: ``ms`` milliseconds a frame, whatever the frame."""

    def __init__(self, ms: float) -> None:
        self.seconds = ms / 1000

    def __call__(self, item: tuple[float, np.ndarray]) -> dict[str, Any]:
        t, frame = item
        time.sleep(self.seconds)
        return {"captured": t, "motion": bool((frame > 128).mean() > 0.01)}


def run(frames: int, fps: float, model_ms: float, on_full: str) -> dict[str, Any]:
    """One run of the camera pipeline under ``on_full``; its figures."""
    p = (
        Pipeline(camera(frames, fps), on_full=on_full)  # the camera is read at its own pace
        .task(denoise)
        .task(Model(model_ms), name="model", on_full=on_full)  # the model takes the newest frame
    )
    latencies = sorted(time.monotonic() - event["captured"] for event in p)
    stats = p.stats()
    return {
        "policy": on_full,
        "frames": len(latencies),
        "dropped": sum(row.dropped for row in stats.rows),
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "max_ms": latencies[-1] * 1000,
        "latency": stats.latency,
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=90)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--model-ms", type=float, default=100.0)
    args = parser.parse_args(argv)
    print(f"{args.frames} frames at {args.fps:g} fps, a model of {args.model_ms:g} ms a frame")
    results = []
    for policy in ("block", "drop_oldest"):
        r = run(args.frames, args.fps, args.model_ms, policy)
        results.append(r)
        print(
            f"  on_full={policy!r:14} {r['frames']:3} frames processed, {r['dropped']:3} dropped;"
            f" capture-to-result latency: median {r['p50_ms']:.0f} ms, worst {r['max_ms']:.0f} ms"
        )
    return results


if __name__ == "__main__":
    main()
