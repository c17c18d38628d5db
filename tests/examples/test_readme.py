"""Every Python block of the README runs as written (but those that say they need a
cluster), each in a fresh interpreter."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.DOTALL)

pytestmark = pytest.mark.timeout(120)


def test_the_readme_has_python_blocks() -> None:
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("block", range(len(BLOCKS)))
def test_a_readme_block_runs_as_written(block: int, tmp_path: Path) -> None:
    code = BLOCKS[block]
    if "needs a Ray cluster" in code:
        pytest.skip("needs a Ray cluster, as the block says")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=100
    )
    assert done.returncode == 0, f"block {block}:\n{code}\n{done.stderr}"
