"""The seqtools seed's image pipeline, one olympipe stage per step.

Synthetic 1920x1080 "photos" are generated once into ``examples/_data/photos``; then each is
loaded, cropped/resized to 200x200, turned grayscale, auto-contrasted (cutoff=3) and
augmented with its mirror image. The same work is done by a serial loop for comparison.

    python examples/image_preprocessing.py [--images 120] [--workers 2]
"""

from __future__ import annotations

import argparse
import io
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from olympipe import Pipeline

DATA = Path(__file__).parent / "_data" / "photos"


def make_photos(n: int, folder: Path = DATA) -> list[Path]:
    """Write ``n`` synthetic 1920x1080 JPEG photos (once) and return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"photo_{i:04d}.jpg"
        if not path.exists():
            y, x = np.mgrid[0:1080, 0:1920]
            base = (np.sin(x / (40 + i % 17)) + np.cos(y / (30 + i % 11))) * 60 + 100
            noise = rng.integers(0, 40, size=(1080, 1920, 3))
            pixels = np.clip(base[..., None] + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(path, quality=85)
        paths.append(path)
    return paths


def load(path: Path) -> Image.Image:
    """Read and decode one photo."""
    with Image.open(path) as im:
        return im.convert("RGB")


def normalize_size(im: Image.Image) -> Image.Image:
    """Centre-crop to a square and resize to 200x200 (the seed's ``normalize_size``)."""
    w, h = im.size
    left_crop = w // 2 - h // 2
    return im.resize((200, 200), Image.Resampling.BILINEAR, box=(left_crop, 1, left_crop + h, h))


def grayscale(im: Image.Image) -> Image.Image:
    """To one channel."""
    return ImageOps.grayscale(im)


def contrast(im: Image.Image) -> Image.Image:
    """Auto-contrast, clipping 3 % at each end."""
    return ImageOps.autocontrast(im, cutoff=3)


def with_mirror(im: Image.Image) -> list[bytes]:
    """The image and its mirror image, as PNG bytes."""
    out = []
    for variant in (im, ImageOps.mirror(im)):
        buf = io.BytesIO()
        variant.save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def load_normalized(path: Path) -> Image.Image:
    """Decode and shrink in one step, so only 200x200 images travel between processes."""
    return normalize_size(load(path))


def serial(paths: list[Path]) -> list[bytes]:
    """The same work in a plain loop."""
    out: list[bytes] = []
    for path in paths:
        out.extend(with_mirror(contrast(grayscale(load_normalized(path)))))
    return out


def pipeline(paths: list[Path], workers: int, progress: bool) -> Pipeline[bytes]:
    """One stage per step; decoding a full-size JPEG is the heavy one, so it gets the workers."""
    return (
        Pipeline(paths, progress=progress)
        .task(load_normalized, count=workers)
        .task(grayscale)
        .task(contrast)
        .task(with_mirror)
        .explode()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2)))
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()

    paths = make_photos(args.images)
    print(f"{len(paths)} synthetic 1920x1080 photos in {DATA}")
    p = pipeline(paths, args.workers, progress=not args.no_progress)
    print("the pipeline, one stage per step of the seed's loop:")
    print(p.graph())

    t0 = time.perf_counter()
    expected = serial(paths)
    t_serial = time.perf_counter() - t0
    t0 = time.perf_counter()
    got = p.wait_for_result()
    t_pipe = time.perf_counter() - t0

    assert got == expected, "the pipeline and the serial loop disagree"
    out = DATA.parent / "preprocessed"
    out.mkdir(exist_ok=True)
    for i, png in enumerate(got):
        (out / f"image_{i:04d}.png").write_bytes(png)
    n = len(paths)
    print(f"\n{n} photos -> {len(got)} 200x200 images (each with its mirror), written to {out}")
    print("the same images, byte for byte, as the serial loop made, in the same order")
    print(f"serial loop : {n / t_serial:7.1f} photos/s ({t_serial:.2f} s)")
    print(f"olympipe    : {n / t_pipe:7.1f} photos/s ({t_pipe:.2f} s), {t_serial / t_pipe:.2f}x")
    cpus = len(os.sched_getaffinity(0))
    print(
        f"(the speed-up comes from the {cpus} CPUs this process may use; it needs them free:"
        " on a busy machine it shrinks)"
    )
    print()
    print(p.stats())


if __name__ == "__main__":
    main()
