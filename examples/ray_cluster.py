"""The seed's image pipeline on a Ray cluster: the same graph, another engine.

The driver reads each photo's bytes (the source runs where the files are); decoding and
every later step run in Ray actors, on whichever nodes the cluster has. Without
``--address`` a local Ray is started for the run and shut down after it.

    python examples/ray_cluster.py [--images 40] [--workers 2] [--address auto]

On a cluster: ``ray start --head`` on one machine, ``ray start --address=HEAD:6379`` on the
others (each with olympipe, pillow and numpy installed), then run this with
``--address auto`` on the head, or ``RAY_ADDRESS=ray://HEAD:10001`` from elsewhere.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path
from typing import Any

from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))

import image_preprocessing as steps

from olympipe import Pipeline, RayEngine


def read_bytes(paths: list[Path]) -> Any:
    """The source: each photo's encoded bytes, read in the driver."""
    for path in paths:
        yield path.read_bytes()


def decode_normalized(data: bytes) -> Image.Image:
    """Decode one JPEG and shrink it to 200x200 (the heavy step: it gets the workers)."""
    with Image.open(io.BytesIO(data)) as im:
        return steps.normalize_size(im.convert("RGB"))


def pipeline(paths: list[Path], workers: int) -> Pipeline[bytes]:
    """The image pipeline, fed with bytes so that no node needs the files."""
    return (
        Pipeline(read_bytes(paths))
        .task(decode_normalized, count=workers)
        .task(steps.grayscale)
        .task(steps.contrast)
        .task(steps.with_mirror)
        .explode()
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--address", default=None, help="a Ray cluster (default: RAY_ADDRESS, else a local Ray)"
    )
    parser.add_argument("--data", type=Path, default=steps.DATA)
    args = parser.parse_args(argv)

    paths = steps.make_photos(args.images, args.data)
    # The stage functions live in modules of this folder: ship them to the workers.
    engine = RayEngine(args.address, runtime_env={"py_modules": [steps, sys.modules[__name__]]})
    p = pipeline(paths, args.workers)
    t0 = time.perf_counter()
    got = p.wait_for_result(engine=engine)
    seconds = time.perf_counter() - t0
    assert got == steps.serial(paths), "Ray and the serial loop disagree"
    print(f"{len(paths)} photos -> {len(got)} images on Ray in {seconds:.2f} s")
    print(p.stats())
    return {"photos": len(paths), "images": len(got)}


if __name__ == "__main__":
    main()
