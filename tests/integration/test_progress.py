"""progress=True: bars in a terminal, log lines elsewhere, and no thread left behind."""

from __future__ import annotations

import logging
import os
import pty
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from olympipe import Pipeline

ROOT = Path(__file__).parents[2]


def test_log_lines_when_not_a_terminal(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="olympipe"):
        got = Pipeline(range(100)).task(abs).task(abs, name="again").wait_for_result(progress=True)
    assert got == list(range(100))
    final = [r.getMessage() for r in caplog.records if r.getMessage().startswith("done:")]
    assert final, "a final progress line is logged"
    assert "abs: 100 in" in final[0]
    assert "again: 100 in" in final[0]
    assert threading.active_count() == 1, "no progress or tqdm thread outlives the run"


def test_bars_in_a_terminal() -> None:
    script = (
        "import time\n"
        "from olympipe import Pipeline\n"
        "def slow(x):\n"
        "    time.sleep(0.002)\n"
        "    return x\n"
        "Pipeline(range(300), progress=True).task(abs).task(slow).task(abs).wait_for_result()\n"
    )
    controller, terminal = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120"}
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdin=terminal, stdout=terminal, stderr=terminal, env=env
    )
    os.close(terminal)
    chunks = []
    while True:
        try:
            data = os.read(controller, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=30)
    os.close(controller)
    screen = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, screen
    for name in ("abs", "slow", "abs#2"):
        assert name in screen
    assert "300/300" in screen
    assert "bottleneck" in screen
