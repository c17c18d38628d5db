"""Replacing workers holds a constant number of file descriptors (a run may replace them
a million times): under the common ``ulimit -n 1024`` a long recycling or crashing run ran
out. A limit of 256 makes a short run show it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.timeout(240)

_SCRIPT = textwrap.dedent(
    """
    import os, resource, sys
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    sys.path.insert(0, {root!r})
    from olympipe import Pipeline
    from tests.helpers import plus_one, exit_3_on_every_7th

    def fds():
        return len(os.listdir("/proc/self/fd"))

    case = sys.argv[1]
    if case == "recycle":
        p = Pipeline(range(200)).task(plus_one, max_items_per_worker=1)
        expected = [x + 1 for x in range(200)]
    else:
        p = Pipeline(range(1050)).task(exit_3_on_every_7th, on_error=lambda x, e: -1)
        expected = [-1 if x % 7 == 6 else x for x in range(1050)]
    peak = 0
    got = []
    for n, x in enumerate(p):
        got.append(x)
        if n % 50 == 0:
            peak = max(peak, fds())
    assert got == expected, "results differ"
    print("peak", peak)
    """
)


@pytest.mark.parametrize("case", ["recycle", "crash"])
def test_replaced_workers_do_not_leak_descriptors(case: str) -> None:
    root = str(__import__("pathlib").Path(__file__).parents[2])
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT.format(root=root), case],
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    peak = int(proc.stdout.split()[-1])
    assert peak < 120, f"{peak} descriptors open in the caller"
    assert "Traceback" not in proc.stderr
