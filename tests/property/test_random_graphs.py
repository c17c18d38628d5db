"""Nothing lost, nothing duplicated, order kept: random graphs against a serial evaluation."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from olympipe import Pipeline
from olympipe._core.tuning import fixed_workers, fusion_groups
from olympipe._graph import plan_for


def inc(x: int) -> int:
    return x + 1


def double(x: int) -> int:
    return x * 2


def jitter_neg(x: int) -> int:
    time.sleep((x % 7) * 0.0002)  # per-item delays, so parallel workers finish out of order
    return -x


def keep_even(x: int) -> bool:
    return x % 2 == 0


def keep_not_div3(x: int) -> bool:
    return x % 3 != 0


def twice(x: int) -> list[int]:
    return [x, x]


MAPS: dict[str, Callable[[int], int]] = {"inc": inc, "double": double, "jitter_neg": jitter_neg}
FILTERS: dict[str, Callable[[int], bool]] = {"even": keep_even, "not_div3": keep_not_div3}


@dataclass(frozen=True)
class Op:
    kind: str
    arg: Any = None
    count: int = 1

    def build(self, p: Pipeline[Any]) -> Pipeline[Any]:
        if self.kind == "task":
            return p.task(MAPS[self.arg], count=self.count)
        if self.kind == "filter":
            return p.filter(FILTERS[self.arg])
        if self.kind == "batch_sum":
            return p.batch(self.arg).task(sum)
        if self.kind == "explode":
            return p.explode(twice)
        if self.kind == "limit":
            return p.limit(self.arg)
        raise AssertionError(self.kind)

    def oracle(self, xs: list[int]) -> list[int]:
        if self.kind == "task":
            return [MAPS[self.arg](x) for x in xs]
        if self.kind == "filter":
            return [x for x in xs if FILTERS[self.arg](x)]
        if self.kind == "batch_sum":
            return [sum(xs[i : i + self.arg]) for i in range(0, len(xs), self.arg)]
        if self.kind == "explode":
            return [y for x in xs for y in twice(x)]
        if self.kind == "limit":
            return xs[: self.arg]
        raise AssertionError(self.kind)


ops = st.one_of(
    st.builds(Op, st.just("task"), st.sampled_from(sorted(MAPS)), st.integers(1, 3)),
    st.builds(Op, st.just("filter"), st.sampled_from(sorted(FILTERS))),
    st.builds(Op, st.just("batch_sum"), st.integers(1, 7)),
    st.builds(Op, st.just("explode")),
    st.builds(Op, st.just("limit"), st.integers(0, 60)),
)
chains = st.lists(ops, min_size=1, max_size=4)


def apply(ops_: list[Op], p: Pipeline[Any]) -> Pipeline[Any]:
    for op in ops_:
        p = op.build(p)
    return p


def evaluate(ops_: list[Op], xs: list[int]) -> list[int]:
    for op in ops_:
        xs = op.oracle(xs)
    return xs


SETTINGS = settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)


def _settings_for(engine: Any, ray_examples: int) -> settings:
    """A Ray run starts a fresh actor process per stage worker (about a second for a
    graph with branches on 2 cores): fewer examples there."""
    return settings(SETTINGS, max_examples=ray_examples) if engine not in ("local", "inline") else SETTINGS


def _pipeline(xs: list[int], engine: Any) -> Pipeline[Any]:
    if engine == "local":
        return Pipeline(xs, start_method="fork")
    return Pipeline(xs, engine=engine)


@pytest.mark.timeout(300)
def test_chain_matches_serial(engine: Any) -> None:
    @_settings_for(engine, 3)
    @given(st.lists(st.integers(-1000, 1000), max_size=150), chains)
    def check(xs: list[int], ops_: list[Op]) -> None:
        got = apply(ops_, _pipeline(xs, engine)).wait_for_result()
        assert got == evaluate(ops_, xs)

    check()


def tag_a(x: int) -> int:
    return 2 * x


def tag_b(x: int) -> int:
    return 2 * x + 1


@pytest.mark.timeout(300)
def test_branches_and_gather_match_serial(engine: Any) -> None:
    @_settings_for(engine, 3)
    @given(st.lists(st.integers(-500, 500), max_size=100), chains, chains, chains)
    def check(xs: list[int], trunk: list[Op], left: list[Op], right: list[Op]) -> None:
        p = apply(trunk, _pipeline(xs, engine))
        a = apply(left, p).task(tag_a)
        b = apply(right, p).task(tag_b)
        got_a, got_b, merged = Pipeline.wait_for_all_results([a, b, a.gather(b)])
        base = evaluate(trunk, xs)
        want_a = [tag_a(x) for x in evaluate(left, base)]
        want_b = [tag_b(x) for x in evaluate(right, base)]
        assert got_a == want_a  # broadcast: each branch saw every item, in order
        assert got_b == want_b
        assert sorted(merged) == sorted(want_a + want_b)  # gather: nothing lost or duplicated
        assert [x for x in merged if x % 2 == 0] == want_a  # and each input keeps its order
        assert [x for x in merged if x % 2 != 0] == want_b

    check()


def flat(x: int) -> list[int]:
    return [x, -x]


@dataclass(frozen=True)
class AutoOp:
    """An operator of an all-``auto`` chain: auto tasks fuse with the filters and plain
    explodes between them; batches and limits keep groups apart (and make them resizable)."""

    kind: str
    arg: Any = None

    def build(self, p: Pipeline[Any]) -> Pipeline[Any]:
        if self.kind == "task":
            return p.task(MAPS[self.arg], count="auto")
        if self.kind == "pairs":
            return p.task(flat, count="auto").explode()
        if self.kind == "filter":
            return p.filter(FILTERS[self.arg])
        if self.kind == "batch_sum":
            return p.batch(self.arg).task(sum, count="auto")
        return p.limit(self.arg)

    def oracle(self, xs: list[int]) -> list[int]:
        if self.kind == "task":
            return [MAPS[self.arg](x) for x in xs]
        if self.kind == "pairs":
            return [y for x in xs for y in flat(x)]
        if self.kind == "filter":
            return [x for x in xs if FILTERS[self.arg](x)]
        if self.kind == "batch_sum":
            return [sum(xs[i : i + self.arg]) for i in range(0, len(xs), self.arg)]
        return xs[: self.arg]


auto_ops = st.one_of(
    st.builds(AutoOp, st.just("task"), st.sampled_from(sorted(MAPS))),
    st.builds(AutoOp, st.just("pairs")),
    st.builds(AutoOp, st.just("filter"), st.sampled_from(sorted(FILTERS))),
    st.builds(AutoOp, st.just("batch_sum"), st.integers(1, 7)),
    st.builds(AutoOp, st.just("limit"), st.integers(0, 60)),
)


@pytest.mark.timeout(300)
def test_auto_chain_matches_serial() -> None:
    @SETTINGS
    @given(
        st.lists(st.integers(-1000, 1000), max_size=150),
        st.lists(auto_ops, min_size=1, max_size=5),
        st.integers(1, 6),
    )
    def check(xs: list[int], ops_: list[AutoOp], workers: int) -> None:
        p: Pipeline[Any] = Pipeline(xs, start_method="fork", workers=workers)
        for op in ops_:
            p = op.build(p)
        plan = plan_for([p._endpoint])
        if workers < fixed_workers(plan, fusion_groups(plan)):  # refused, before anything runs
            with pytest.raises(ValueError, match="smaller than"):
                p.wait_for_result()
            return
        want = xs
        for op in ops_:
            want = op.oracle(want)
        assert p.wait_for_result() == want

    check()
