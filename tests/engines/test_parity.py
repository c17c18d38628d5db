"""What every engine must do alike (the engines once disagreed on each of these)."""

from __future__ import annotations

from typing import Any

import pytest

from olympipe import Pipeline
from tests.engines import stagefns as f

pytestmark = pytest.mark.timeout(120)


def test_a_stage_raising_keyboard_interrupt_raises_it_in_the_caller(engine: Any) -> None:
    p = Pipeline(range(20)).task(f.interrupt_on_5, name="grab").task(f.double)
    with pytest.raises(KeyboardInterrupt) as info:
        p.wait_for_result(engine=engine)
    assert info.value.stage == "grab"  # type: ignore[attr-defined]
    assert info.value.item_repr == "5"  # type: ignore[attr-defined]


def test_a_stage_raising_system_exit_raises_it_with_its_code(engine: Any) -> None:
    p = Pipeline(range(20)).task(f.exit_4_on_5)
    with pytest.raises(SystemExit) as info:
        p.wait_for_result(engine=engine)
    assert info.value.code == 4


def test_the_stats_table_has_the_same_columns_on_every_engine(engine: Any) -> None:
    p = Pipeline(range(200)).task(f.sleepy).filter(f.is_odd)
    p.wait_for_result(engine=engine)
    rows = p.stats().rows
    assert [r.name for r in rows] == ["sleepy", "is_odd"]
    assert [(r.items_in, r.items_out) for r in rows] == [(200, 200), (200, 100)]
    for r in rows:
        assert r.workers == r.min_workers == r.max_workers == 1
        assert 0 < r.busy_pct <= 100
        assert r.cpu_pct > 0
        assert r.peak_rss_mb > 0


@pytest.mark.parametrize(
    "build",
    [
        lambda: Pipeline(range(3)).task(f.double, ordered="yes"),  # type: ignore[call-overload]
        lambda: Pipeline(range(3)).task(f.double, name=3),  # type: ignore[call-overload]
        lambda: Pipeline(range(3)).batch(2, keep_incomplete_batch=None),  # type: ignore[arg-type]
        lambda: Pipeline(range(3), progress="no"),  # type: ignore[arg-type]
        lambda: Pipeline(range(3)).wait_for_result(progress=1),  # type: ignore[arg-type]
    ],
)
def test_wrong_types_are_type_errors_before_anything_runs(build: Any) -> None:
    with pytest.raises(TypeError):
        build()


def test_a_stage_error_is_caught_as_its_own_type_and_as_pipeline_error(engine: Any) -> None:
    import pickle

    from olympipe import PipelineError

    with pytest.raises(KeyError) as info:
        Pipeline(range(10)).task(f.fail_on_5).wait_for_result(engine=engine)
    error = info.value
    assert isinstance(error, PipelineError)
    assert (error.stage, error.item_repr) == ("fail_on_5", "5")
    assert error.remote_traceback
    assert isinstance(error.__cause__, KeyError)
    assert str(error).startswith("stage 'fail_on_5' failed on item 5: KeyError")  # not quoted as a key
    again = pickle.loads(pickle.dumps(error))
    assert isinstance(again, KeyError)
    assert isinstance(again, PipelineError)
    assert again.stage == "fail_on_5"


class _WithLayout(OSError):
    pass


def _raise_layout(x: int) -> int:
    raise _WithLayout(5, "no room")


def test_a_cause_that_cannot_be_combined_still_gives_a_pipeline_error() -> None:
    from olympipe import PipelineError

    with pytest.raises(PipelineError) as info:
        Pipeline(range(3)).task(_raise_layout).wait_for_result(engine="inline")
    assert isinstance(info.value.__cause__, _WithLayout)
