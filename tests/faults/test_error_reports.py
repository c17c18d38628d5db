"""What a failure reports: the errors column, the exception's class, one traceback, a refusal
before the run."""

from __future__ import annotations

import pytest

from olympipe import Pipeline, PipelineError
from tests.engines import stagefns as f

pytestmark = pytest.mark.timeout(60)


def test_errors_column_counts_failed_items() -> None:
    p = Pipeline(range(10)).task(f.fail_on_5, on_error=lambda x, e: None)
    assert p.wait_for_result() == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    assert p.stats().rows[0].errors == 1
    q = Pipeline(range(10)).task(f.fail_on_5)
    with pytest.raises(PipelineError):
        q.wait_for_result()
    assert q.stats().rows[0].errors == 1


def test_a_failing_run_prints_no_second_traceback() -> None:
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    code = textwrap.dedent(
        """
        import time
        from olympipe import Pipeline, PipelineError
        def fail(x):
            if x == 50:
                raise ValueError("fifty")
            return x
        def slow(x):
            time.sleep(0.001)
            return x
        for _ in range(8):
            try:
                p = Pipeline(range(200), start_method="fork").task(slow, count=2)
                p.task(fail).task(slow).wait_for_result()
            except PipelineError:
                pass
        print("done")
        """
    )
    root = Path(__file__).parents[2]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=root)
    assert done.stdout.strip() == "done", done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]


def test_a_stage_that_cannot_be_recycled_says_so_before_the_run() -> None:
    import socket

    with socket.socket() as sock:

        def uses_socket(x: int) -> int:
            return x if sock is not None else -x

        p = Pipeline(range(50)).task(uses_socket, max_items_per_worker=10)
        with pytest.raises(PipelineError, match=r"cannot be recycled .* does not pickle") as info:
            p.wait_for_result()
    assert info.value.stage == "uses_socket"
    assert "died unexpectedly" not in str(info.value)
