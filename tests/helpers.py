"""Module-level functions for tests (importable by spawn and forkserver workers)."""

from __future__ import annotations

import os
import random
import time


def times_2(x: int) -> int:
    return x * 2


def plus_one(x: int) -> int:
    return x + 1


def is_even(x: int) -> bool:
    return x % 2 == 0


def jitter(x: int) -> int:
    time.sleep(random.random() * 0.003)
    return x


def fail_on_7(x: int) -> int:
    if x == 7:
        raise ValueError(f"bad item {x}")
    return x


def exit_3_on_5(x: int) -> int:
    if x == 5:
        os._exit(3)
    return x


def slow(x: int) -> int:
    time.sleep(0.01)
    return x


def exit_3_on_every_7th(x: int) -> int:
    if x % 7 == 6:
        os._exit(3)
    return x
