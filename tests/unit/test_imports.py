"""What each import loads: a worker imports only the runtime; the builder brings the default
engine with it, so that a first run does not pay for importing the runtime."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(60)


def _modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(m for m in sys.modules if m.startswith('olympipe')))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=50, check=True
    )
    return set(done.stdout.split())


def test_import_olympipe_loads_neither_the_builder_nor_the_runtime() -> None:
    loaded = _modules_after("import olympipe")
    assert "olympipe.pipeline" not in loaded
    assert "olympipe._runtime.supervisor" not in loaded


def test_the_builder_brings_the_local_engine() -> None:
    loaded = _modules_after("from olympipe import Pipeline")
    assert {"olympipe._engines.local", "olympipe._runtime.supervisor"} <= loaded
    assert "olympipe._engines.ray" not in loaded
