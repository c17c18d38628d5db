"""Crash isolation and recycling with ``/dev/shm`` nearly full: the journal holds what does
not fit elsewhere (the temporary directory) instead of failing the user's stage.

Each case runs in a private mount namespace with a small tmpfs of its own on /dev/shm
(root only: skipped elsewhere), filled to a few hundred KiB of room."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).parents[2]

_SCRIPT = textwrap.dedent(
    """
    import os, sys, tempfile
    sys.path.insert(0, {root!r})
    from olympipe import Pipeline
    from tests.helpers import exit_3_on_every_7th

    with open("/dev/shm/filler", "wb") as f:  # a full /dev/shm but for 256 KiB
        room = os.statvfs("/dev/shm")
        f.write(bytes(room.f_bavail * room.f_frsize - (256 << 10)))

    def items():
        for i in range(60):
            yield (i, bytes(1 << 20))  # 1 MiB: no room for its segment, so in the frame

    def first(pair):
        return exit_3_on_every_7th(pair[0])

    recycled = Pipeline(items()).task(len, max_items_per_worker=5).wait_for_result()
    assert recycled == [2] * 60, recycled
    isolated = Pipeline(items()).task(first, on_error=lambda x, e: -1).wait_for_result()
    assert isolated == [-1 if i % 7 == 6 else i for i in range(60)], isolated
    left = [n for n in os.listdir("/dev/shm") if n != "filler"]
    spilled = [n for n in os.listdir(tempfile.gettempdir()) if n.startswith(f"olympipe-{{os.getpid()}}-")]
    assert not left and not spilled, (left, spilled)
    print("ok")
    """
)


def _private_shm_works() -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /dev/shm"], capture_output=True
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _private_shm_works(), reason="needs root and unshare for a private /dev/shm")
def test_a_nearly_full_dev_shm_does_not_fail_a_replaceable_stage() -> None:
    script = _SCRIPT.format(root=str(ROOT))
    proc = subprocess.run(
        [
            "unshare",
            "-m",
            "sh",
            "-c",
            'mount -t tmpfs -o size=24m tmpfs /dev/shm && exec "$0" -c "$1"',
            sys.executable,
            script,
        ],
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok")
