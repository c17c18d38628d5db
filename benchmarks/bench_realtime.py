"""Real time: a 30 fps camera into a 100 ms model, with drop_oldest and with block; and a
server whose model costs 20 ms + 1 ms per input, with and without batching.

The camera is examples/camera.py's: frame ``i`` is captured at ``start + i / 30`` whether
or not it is read (a device's driver keeps the frames not read yet), and each result's
latency counts from its frame's capture. With ``on_full="drop_oldest"`` on the source and
on the model the run lasts 60 s; PSS of the whole process tree is sampled from second 10 on.
With ``block`` the camera runs 15 s (the model then needs 45 s to catch up): its latency
grows for as long as the camera runs.

The server is examples/http_model.py's, loaded by 32 clients sending 20 requests each, one
after the other, from a process of their own; then by one client alone, whose requests
wait at most ``max_wait`` (5 ms) more when batched than when not.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

from common import Section, tree_pss_mb

from olympipe import Pipeline

sys.path.insert(0, str(Path(__file__).parents[1] / "examples"))
import camera
import http_model

FPS = 30.0
MODEL_MS = 100.0
DROP_SECONDS = 60
BLOCK_SECONDS = 15


class Counted:
    """The camera, counting the frames it gave."""

    def __init__(self, seconds: float) -> None:
        self.given = 0
        self.frames = int(seconds * FPS)

    def __iter__(self) -> Any:
        for frame in camera.camera(self.frames, FPS):
            self.given += 1
            yield frame


def run(policy: str, seconds: float) -> dict[str, Any]:
    source = Counted(seconds)
    p = (
        Pipeline(source, on_full=policy, start_method="fork")
        .task(camera.denoise)
        .task(camera.Model(MODEL_MS), name="model", on_full=policy)
    )
    started = time.monotonic()
    pss: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(1.0):
            pss.append((time.monotonic() - started, tree_pss_mb()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    latencies = sorted(time.monotonic() - event["captured"] for event in p)
    stop.set()
    sampler.join()
    stats = p.stats()
    n = len(latencies)
    return {
        "given": source.given,
        "out": n,
        "dropped": sum(r.dropped for r in stats.rows),
        "p50": latencies[n // 2],
        "p99": latencies[min(n - 1, int(n * 0.99))],
        "max": latencies[-1],
        "pss": [mb for t, mb in pss if 10 <= t <= seconds],
    }


def main(reps: int) -> Section:
    s = Section(
        "Real time: a 30 fps camera into a 100 ms model",
        "with drop_oldest, p99 capture-to-result latency <= 170 ms, PSS within 10 % from second"
        " 10 to 60, frames read = out + dropped exactly; with block the latency grows",
    )
    drop = run("drop_oldest", DROP_SECONDS)
    s.row(
        "drop_oldest, 60 s: frames read / out / dropped",
        f"{drop['given']} / {drop['out']} / {drop['dropped']}",
        "exact" if drop["given"] == drop["out"] + drop["dropped"] else "MISMATCH",
    )
    s.row(
        "drop_oldest: latency p50 / p99 / max",
        f"{drop['p50'] * 1000:.0f} / {drop['p99'] * 1000:.0f} / {drop['max'] * 1000:.0f} ms",
    )
    if drop["pss"]:
        low, high = min(drop["pss"]), max(drop["pss"])
        s.row(
            "drop_oldest: PSS from second 10 to 60",
            f"{low:.0f}-{high:.0f} MB",
            f"{(high - low) / low * 100:.1f} % spread",
        )
    block = run("block", BLOCK_SECONDS)
    s.row("block, 15 s of camera: frames read / out", f"{block['given']} / {block['out']}")
    s.row("block: latency p50 / max", f"{block['p50'] * 1000:.0f} / {block['max'] * 1000:.0f} ms")
    plain = http_model.measure(False, 32, 20)
    batched = http_model.measure(True, 32, 20)
    s.row(
        "server, 32 clients, one by one", f"{plain['requests_per_s']:.0f} req/s, p95 {plain['p95_ms']:.0f} ms"
    )
    s.row(
        "server, 32 clients, batch(32, max_wait=0.005)",
        f"{batched['requests_per_s']:.0f} req/s, p95 {batched['p95_ms']:.0f} ms",
        f"{batched['requests_per_s'] / plain['requests_per_s']:.1f}x req/s",
    )
    # 100 requests: a p95 of 20 is their 19th, one unlucky scheduling decides it
    alone = http_model.measure(False, 1, 100)
    alone_batched = http_model.measure(True, 1, 100)
    for q in ("p50", "p95"):
        s.row(
            f"server, one client, {q}: one by one / batched",
            f"{alone[q + '_ms']:.1f} / {alone_batched[q + '_ms']:.1f} ms",
            f"batched waits {alone_batched[q + '_ms'] - alone[q + '_ms']:+.1f} ms (max_wait 5 ms)",
        )
    s.note("one run each (a minute of camera); the block run's latency grows with the camera's running time")
    return s
