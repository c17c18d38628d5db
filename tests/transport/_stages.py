"""Stages the payload tests share: importable by reference, so every start method runs them."""

from __future__ import annotations

from typing import Any

import numpy as np


def ident(a: Any) -> Any:
    return a


def bump(a: np.ndarray) -> np.ndarray:
    a += 1  # in place: the buffer the array arrived in is forwarded
    return a


def plus_one(a: np.ndarray) -> np.ndarray:
    return a + 1  # a new array: written into a new segment


def plus_one_in_new_worker(a: np.ndarray) -> tuple[np.ndarray, int]:
    import os

    return a + 1, os.getpid()
