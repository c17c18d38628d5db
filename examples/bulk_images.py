"""The creevey seed: load -> trim -> resize -> write, with failures reported, not fatal.

    python examples/bulk_images.py [--images 40] [--corrupt 3]

Some inputs are corrupt on purpose. The load stage catches the listed exception types
per item with ``on_error`` and turns them into a record, so the batch goes on; a run
report at the end says which inputs failed and why (creevey's ``exceptions_to_catch`` and
run report).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from olympipe import Pipeline

HERE = Path(__file__).parent
EXCEPTIONS_TO_CATCH = (UnidentifiedImageError, OSError)


@dataclass
class Failed:
    """An input that could not be processed, and why."""

    path: Path
    reason: str


@dataclass
class Done:
    """An input written to ``out``."""

    path: Path
    out: Path


def make_inputs(n: int, corrupt: int, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    paths = []
    for i in range(n):
        path = folder / f"img_{i:04d}.png"
        if i < corrupt:
            path.write_bytes(b"not an image at all")
        else:
            Image.fromarray(rng.integers(0, 255, size=(480, 640, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def load(path: Path) -> tuple[Path, np.ndarray]:
    with Image.open(path) as im:
        return path, np.asarray(im.convert("RGB"))


def record_failure(path: Path, exc: Exception) -> Failed:
    if not isinstance(exc, EXCEPTIONS_TO_CATCH):
        raise exc  # anything else is a bug: fail the run loudly
    return Failed(path, f"{type(exc).__name__}: {exc}")


def trim_bottom_100(item: tuple[Path, np.ndarray] | Failed) -> tuple[Path, np.ndarray] | Failed:
    if isinstance(item, Failed):
        return item
    path, image = item
    return path, image[:-100, :]


def resize_224(item: tuple[Path, np.ndarray] | Failed) -> tuple[Path, np.ndarray] | Failed:
    if isinstance(item, Failed):
        return item
    path, image = item
    return path, np.asarray(Image.fromarray(image).resize((224, 224)))


def writer(out: Path):  # type: ignore[no-untyped-def]
    def write(item: tuple[Path, np.ndarray] | Failed) -> Done | Failed:
        if isinstance(item, Failed):
            return item
        path, image = item
        target = out / (path.stem + ".png")
        Image.fromarray(image).save(target)
        return Done(path, target)

    return write


def main(argv: list[str] | None = None) -> dict[str, int]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--corrupt", type=int, default=3)
    parser.add_argument("--data", type=Path, default=HERE / "_data" / "bulk")
    parser.add_argument("--out", type=Path, default=HERE / "_out" / "bulk")
    args = parser.parse_args(argv)
    inputs = make_inputs(args.images, args.corrupt, args.data)
    args.out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    report = (
        Pipeline(inputs)
        .task(load, count=2, on_error=record_failure)
        .task(trim_bottom_100)
        .task(resize_224)
        .task(writer(args.out))
        .wait_for_result()
    )
    elapsed = time.perf_counter() - t0
    failed = [r for r in report if isinstance(r, Failed)]
    done = [r for r in report if isinstance(r, Done)]
    print(f"run report: {len(done)} written, {len(failed)} failed, {len(inputs) / elapsed:.1f} inputs/s")
    for f in failed:
        print(f"  failed {f.path.name}: {f.reason}")
    return {"done": len(done), "failed": len(failed)}


if __name__ == "__main__":
    main()
