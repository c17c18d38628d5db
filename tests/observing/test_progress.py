"""progress=True: bars in a terminal, log lines elsewhere, and no thread left behind."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from olympipe import Pipeline

ROOT = Path(__file__).parents[2]


def test_plain_meters_when_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    got = Pipeline(range(100)).task(abs).task(abs, name="again").wait_for_result(progress=True)
    assert got == list(range(100))
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert any(line.startswith("abs") and "100/100" in line for line in lines), err
    assert any(line.startswith("again") and "100/100" in line for line in lines), err
    assert "\x1b[" not in err, "no cursor movement where stderr is not a terminal"
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


def test_plain_meters_show_an_auto_stage_count(capsys: pytest.CaptureFixture[str]) -> None:
    got = Pipeline(range(100), workers=2).task(abs, count="auto").batch(5).wait_for_result(progress=True)
    assert len(got) == 20
    lines = capsys.readouterr().err.strip().splitlines()
    assert any(line.startswith("abs") and "100/100" in line and "[x1 auto]" in line for line in lines), lines
    assert not any(line.startswith("batch") and "auto" in line for line in lines), lines


def test_plain_meters_show_the_latency_of_a_live_source_and_the_drops(
    capsys: pytest.CaptureFixture[str],
) -> None:
    got = Pipeline(iter(range(100)), on_full="drop_newest").task(abs).wait_for_result(progress=True)
    assert got == sorted(got)
    err = capsys.readouterr().err
    assert "latency p50" in err, err
    dropped = 100 - len(got)
    if dropped:  # how many depends on the scheduler; each is shown
        assert f"[{dropped:,} dropped]" in err, err
    listed = Pipeline(range(100)).task(abs).wait_for_result(progress=True)
    assert len(listed) == 100
    assert "latency" not in capsys.readouterr().err  # a list's length is known: no latency line


def test_in_a_notebook_the_stats_table_is_displayed_and_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    """In an IPython kernel: one display of the stats table (HTML and text), updated in
    place as the run goes, never a stack of terminal bars."""
    import types

    shown: list[tuple[str, str]] = []

    class Handle:
        def update(self, obj: Any) -> None:
            shown.append(("update", obj._repr_html_() + repr(obj)))

    def display(obj: Any, display_id: bool = False) -> Handle:
        assert display_id
        shown.append(("display", obj._repr_html_() + repr(obj)))
        return Handle()

    ipython = types.ModuleType("IPython")
    ipython_display = types.ModuleType("IPython.display")
    ipython_display.display = display  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", ipython_display)
    got = Pipeline(range(100)).task(abs).wait_for_result(progress=True)
    assert got == list(range(100))
    assert shown[0][0] == "display"
    assert [kind for kind, _ in shown[1:]] == ["update"] * (len(shown) - 1)
    assert "<table" in shown[-1][1]
    assert "100" in shown[-1][1]
