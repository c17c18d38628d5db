"""The feeder thread on its own: nothing escapes it when the run's pipes are gone."""

from __future__ import annotations

import errno
import multiprocessing
import threading
from typing import Any

import numpy as np
import pytest

from olympipe import Pipeline, PipelineError
from olympipe._runtime import feeder
from olympipe._runtime.credits import Target
from olympipe._runtime.feeder import Feeder
from olympipe._runtime.messages import Control
from olympipe._transport import shm
from olympipe._transport.channel import Channel


@pytest.mark.parametrize("source", [[], iter([])])
def test_end_of_stream_into_a_pipe_with_no_reader_does_not_escape(source: Any) -> None:
    """Hardening defect 11: the end-of-stream write was outside the broken-pipe guard."""
    ctx = multiprocessing.get_context("fork")
    inbox = Channel(ctx, 1, 1)
    inbox.close_reader()  # every worker reading this stage is gone
    control = Control(Channel(ctx, 1, 1))
    escaped: list[Any] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: escaped.append(args.exc_value)
    try:
        feeder = Feeder(source, [Target(inbox, 0, None)], control, threading.Event(), lambda: (None, 1))
        feeder.start()
        assert feeder.join(10)
    finally:
        threading.excepthook = previous
        inbox.close()
        control.channel.close()
    assert escaped == []


@pytest.mark.timeout(60)
def test_a_defect_in_the_feeder_fails_the_run_instead_of_hanging(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected exception in the sender thread used to end the thread silently, and the
    run waited for ever for chunks that would never come."""

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("a defect")

    monkeypatch.setattr(feeder, "encode_chunk", broken)
    with pytest.raises(PipelineError, match="the feeder failed"):
        Pipeline(range(10), start_method="fork").task(abs).wait_for_result()


@pytest.mark.timeout(60)
def test_a_shared_memory_error_fails_the_run_instead_of_hanging(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every OSError of a send was taken for a pipe broken by the teardown: an error writing
    a segment (an I/O error, a full /dev/shm) ended the sender thread silently, and the run
    waited for ever."""

    def failing(_fd: int, _view: memoryview) -> None:
        raise OSError(errno.EIO, "an I/O error")

    monkeypatch.setenv("OLYMPIPE_POOL_BYTES", "0")
    monkeypatch.setattr(shm, "write_all", failing)
    with pytest.raises(PipelineError, match="an I/O error"):
        Pipeline((np.ones(1 << 16) for _ in range(3)), start_method="fork").task(abs).wait_for_result()
