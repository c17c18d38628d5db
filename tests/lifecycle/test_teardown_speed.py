"""A failing run with a replaceable first stage and large items through the pipes (no
shared memory) ends at once and says nothing false: the feeder was blocked writing into a
pipe whose reader only the caller still held, not in the source's next()."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from olympipe import Pipeline, PipelineError

pytestmark = pytest.mark.timeout(60)


def big_items() -> Iterator[bytes]:
    for _ in range(200):
        yield bytes(1 << 20)


def fail_at_third(item: bytes) -> int:
    fail_at_third.seen = getattr(fail_at_third, "seen", 0) + 1  # type: ignore[attr-defined]
    if fail_at_third.seen == 3:  # type: ignore[attr-defined]
        raise ValueError("third")
    return len(item)


def test_the_feeder_blocked_on_a_kept_pipe_is_released(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OLYMPIPE_DISABLE_SHM", "1")
    for _ in range(3):
        pipe = Pipeline(big_items()).task(bytes, on_error=lambda x, e: b"").task(fail_at_third)
        with caplog.at_level(logging.WARNING, logger="olympipe"):
            t0 = time.monotonic()
            with pytest.raises(PipelineError):
                pipe.wait_for_result()
            took = time.monotonic() - t0
        assert "still blocked in next()" not in caplog.text
        assert took < 5  # a hang guard; the false wait was a second per feeder
