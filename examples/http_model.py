"""An HTTP server as a source: a small model answers JSON requests through a pipeline.

    python examples/http_model.py [--port 8000] [--idle 30]

Then, from another shell:

    curl -s -X POST localhost:8000/predict -d '{"features": [1, 2, 3]}'

Each request becomes an item; the pipeline normalises the features in one stage and runs
the "model" (a fixed linear layer built once per worker) in two workers; the value that
comes out is the response. A request whose features are invalid gets a 500 with the error,
and the server keeps serving. The run ends after ``--idle`` seconds without a request.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from olympipe import Pipeline


def parse(body: Any) -> list[float]:
    return [float(v) for v in body["features"]]


def normalise(features: list[float]) -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    if x.shape != (3,):
        raise ValueError(f"expected 3 features, got {x.shape[0]}")
    return (x - x.mean()) / (x.std() or 1.0)


class LinearModel:
    """Stands for a model loaded once per worker."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.w = rng.normal(size=(3, 2))

    def predict(self, x: np.ndarray) -> dict[str, Any]:
        logits = x @ self.w
        return {"label": int(np.argmax(logits)), "logits": [round(float(v), 4) for v in logits]}


def build(port: int, idle: float | None) -> Pipeline[Any]:
    return (
        Pipeline.server([("POST", "/predict", parse)], host="127.0.0.1", port=port, inactivity_timeout=idle)
        .task(normalise)
        .class_task(LinearModel, LinearModel.predict, [0], count=2)
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--idle", type=float, default=30.0)
    args = parser.parse_args(argv)
    p = build(args.port, args.idle)
    print(f"serving on http://127.0.0.1:{p.port}/predict (ends after {args.idle:g} s idle)")
    p.wait_for_completion()


if __name__ == "__main__":
    main()
