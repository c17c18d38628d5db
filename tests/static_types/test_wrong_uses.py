"""Wrong uses of the API fail under both checkers users run: mypy --strict and basedpyright.

``wrong_uses.py`` marks each line that must be rejected with ``# wrong:``; this test runs each
checker on that file and compares the lines it reports with the marked ones, both ways: a
signature loosened to ``Any`` (a wrong use passes) fails it, and so does one tightened too far
(a right use is rejected).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
WRONG = HERE / "wrong_uses.py"
ROOT = HERE.parents[1]


def marked_lines() -> set[int]:
    lines = WRONG.read_text().splitlines()
    return {number for number, line in enumerate(lines, 1) if "# wrong:" in line}


def checker(name: str, config: Path) -> list[str]:
    """The command running ``name`` from this Python's environment."""
    if name == "mypy":
        return [sys.executable, "-m", "mypy", "--strict", "--config-file", str(ROOT / "pyproject.toml")]
    found = Path(sys.executable).parent / name
    program = str(found) if found.exists() else shutil.which(name)
    if program is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
    # The project's own settings leave this file out (lint must pass): a config of its own.
    settings = {"typeCheckingMode": "strict", "pythonVersion": "3.10", "extraPaths": [str(ROOT)]}
    config.write_text(json.dumps(settings))
    return [program, "--project", str(config), "--pythonpath", sys.executable]


# what each checker prints: "path:LINE: error: ..." (mypy), "path:LINE:COL - error: ..."
REPORTED = {
    "mypy": re.compile(r"wrong_uses\.py:(\d+): error:"),
    "basedpyright": re.compile(r"wrong_uses\.py:(\d+):\d+ - error:"),
}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", ["mypy", "basedpyright"])
def test_each_wrong_use_is_an_error_and_nothing_else_is(name: str, tmp_path: Path) -> None:
    command = [*checker(name, tmp_path / "pyrightconfig.json"), str(WRONG)]
    run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=170)
    reported = {int(m.group(1)) for m in REPORTED[name].finditer(run.stdout)}
    assert run.returncode != 0, run.stdout + run.stderr
    assert reported, run.stdout + run.stderr  # the checker ran and read the file
    missed = sorted(marked_lines() - reported)
    extra = sorted(reported - marked_lines())
    assert not missed, f"{name} accepts the wrong uses on lines {missed}"
    assert not extra, f"{name} rejects lines not marked wrong: {extra}\n{run.stdout}"
