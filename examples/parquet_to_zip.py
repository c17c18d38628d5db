"""The multiprocessing notebook seed: glyph arrays -> crop/resize -> PNG -> one zip file.

    python examples/parquet_to_zip.py [--images 2000] [--out examples/_out/glyphs.zip]

Rows of 137x236 grayscale glyphs (the shape of the notebook's parquet files, generated
here) are cropped to their bounding box, padded square, resized to 128x128 and encoded as
PNG in parallel; a single writer stage at the end puts them into one zip file, in input
order (a class_task whose instance is the open zip file, closed by ``close_method``).
"""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from olympipe import Pipeline

HERE = Path(__file__).parent
HEIGHT, WIDTH, SIZE = 137, 236, 128


def glyph_rows(n: int) -> Iterator[tuple[str, np.ndarray]]:
    """Synthetic glyphs: dark strokes on a light background, like the dataset's."""
    rng = np.random.default_rng(3)
    for i in range(n):
        img = np.full((HEIGHT, WIDTH), 250, dtype=np.uint8)
        for _ in range(4):
            y, x = rng.integers(20, HEIGHT - 20), rng.integers(30, WIDTH - 30)
            h, w = rng.integers(5, 30), rng.integers(5, 60)
            img[y : y + h, x : x + w] = rng.integers(0, 60)
        yield f"Train_{i}", img


def bbox(img: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.any(img, axis=1)
    cols = np.any(img, axis=0)
    rmin, rmax = np.where(rows)[0][[0, -1]]
    cmin, cmax = np.where(cols)[0][[0, -1]]
    return int(rmin), int(rmax), int(cmin), int(cmax)


def crop_resize(row: tuple[str, np.ndarray], pad: int = 16) -> tuple[str, np.ndarray]:
    """The notebook's crop_resize: crop around the ink, pad to a square, resize."""
    name, img0 = row
    img0 = 255 - img0  # ink as high values, as in the notebook
    ymin, ymax, xmin, xmax = bbox(img0[5:-5, 5:-5] > 80)
    xmin = xmin - 13 if xmin > 13 else 0
    ymin = ymin - 10 if ymin > 10 else 0
    xmax = xmax + 13 if xmax < WIDTH - 13 else WIDTH
    ymax = ymax + 10 if ymax < HEIGHT - 10 else HEIGHT
    img = img0[ymin:ymax, xmin:xmax].copy()
    img[img < 28] = 0
    lx, ly = xmax - xmin, ymax - ymin
    side = max(lx, ly) + pad
    img = np.pad(img, [((side - ly) // 2,), ((side - lx) // 2,)], mode="constant")
    return name, np.asarray(Image.fromarray(img).resize((SIZE, SIZE), Image.Resampling.BILINEAR))


def to_png(row: tuple[str, np.ndarray]) -> tuple[str, bytes]:
    name, img = row
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return name, buf.getvalue()


def process(row: tuple[str, np.ndarray]) -> tuple[str, bytes]:
    return to_png(crop_resize(row))


class ZipWriter:
    """One open zip file: the single, ordered writer stage."""

    def __init__(self, path: str) -> None:
        self.zip = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED)

    def write(self, row: tuple[str, bytes]) -> str:
        name, png = row
        self.zip.writestr(f"{name}.png", png)
        return name

    def close(self) -> None:
        self.zip.close()


def main(argv: list[str] | None = None) -> dict[str, int]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=HERE / "_out" / "glyphs.zip")
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = list(glyph_rows(args.images))

    t0 = time.perf_counter()
    serial = [process(r) for r in rows]
    t_serial = time.perf_counter() - t0

    t0 = time.perf_counter()
    with mp.get_context("fork").Pool(2) as pool:  # the notebook's way: Pool.imap, then a loop
        pooled = list(pool.imap(process, rows, 32))
    t_pool = time.perf_counter() - t0

    t0 = time.perf_counter()
    names = (
        Pipeline(rows)
        .task(crop_resize, count=2)
        .task(to_png)
        .class_task(ZipWriter, ZipWriter.write, [str(args.out)], close_method=ZipWriter.close)
        .wait_for_result()
    )
    t_pipe = time.perf_counter() - t0

    with zipfile.ZipFile(args.out) as z:
        stored = z.namelist()
    assert stored == [f"{n}.png" for n, _ in serial], "the zip holds every image, in input order"
    assert [p for _, p in pooled] == [p for _, p in serial]
    n = len(names)
    print(f"{n} glyphs -> {args.out}")
    print(f"serial loop       : {n / t_serial:8.0f} images/s")
    print(f"Pool(2).imap      : {n / t_pool:8.0f} images/s (no writing)")
    print(f"olympipe with zip : {n / t_pipe:8.0f} images/s ({t_serial / t_pipe:.2f}x serial)")
    return {"stored": len(stored)}


if __name__ == "__main__":
    main()
