"""Stage functions of the resume tests, importable by name (Ray's workers import them)."""

from __future__ import annotations

import os


def times_1(x: int) -> int:
    return x


def times_3(x: int) -> int:
    return x * 3


def not_multiple_of_5(x: int) -> bool:
    return x % 5 != 0


def three_of_each(x: int) -> list[int]:
    return [x, x, x]


def fail_at_60(x: int) -> int:
    if x == 60:
        raise ValueError("sixty")
    return x


def append_to(path: str):  # type: ignore[no-untyped-def]
    """A stage that appends each item to ``path`` (a side effect of the last stage)."""

    def write(x: int) -> int:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{x}\n".encode())
        finally:
            os.close(fd)
        return x

    return write


def lines_of(path: str) -> list[int]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [int(line) for line in f]
