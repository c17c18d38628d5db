"""Large buffers the forked workers already hold go by address, and only when that is safe:
each case runs in a fresh single-threaded interpreter (``_by_address_cases.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(60)
CASES = Path(__file__).with_name("_by_address_cases.py")


def run_case(case: str, **env: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(CASES), case],
        capture_output=True,
        text=True,
        timeout=50,
        env={**os.environ, **env},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def all_but_one(shared: list[bool]) -> bool:
    """Every result shares the source's memory, but one may not: an array malloc put in the
    heap can share its first or last page with data the caller writes, and is copied then."""
    return shared.count(False) <= 1


#: What that one array costs the caller: a new slot of the reused pool, counted once as a
#: slot and once as the segment the slot is made of.
ONE_ARRAY_COPIED = 2


def test_a_list_of_arrays_crosses_every_stage_without_a_copy() -> None:
    got = run_case("identity")
    assert got["ok"]
    assert got["copies"] <= ONE_ARRAY_COPIED
    assert all_but_one(got["shared"])  # the results are the source's own buffers


def test_copies_can_be_forced() -> None:
    got = run_case("identity", OLYMPIPE_COPY_INHERITED="1")
    assert got["ok"]
    assert got["copies"] == 12
    assert not any(got["shared"])


def test_under_forkserver_buffers_are_copied() -> None:
    got = run_case("forkserver")
    assert got["ok"]
    assert got["copies"] == 6
    assert not any(got["shared"])


def test_arrays_changed_in_place_are_not_forwarded_by_address() -> None:
    got = run_case("in_place")  # bump, ident, bump: +2 each, the source untouched
    assert got["ok"]
    assert not any(got["shared"])


@pytest.mark.parametrize("case", ["the_same_array_twice", "overlapping_views"])
def test_bytes_sent_twice_arrive_as_they_were_sent(case: str) -> None:
    got = run_case(case)  # a stage changes each in place: the second must not see the first's change
    assert got["ok"]
    assert got["copies"] > 0


def test_a_buffer_the_caller_wrote_after_the_fork_is_copied() -> None:
    got = run_case("caller_writes_after_the_fork")
    assert got["ok"]
    assert got["copies"] == 6


def test_a_fork_of_the_caller_after_the_run_started_turns_addresses_off() -> None:
    got = run_case("caller_forks_after_writing")
    assert got["ok"]
    assert got["copies"] == 4


def test_a_worker_that_forked_after_writing_copies() -> None:
    got = run_case("a_stage_forks_after_writing")
    assert got["ok"]
    assert not any(got["shared"])


def test_filter_and_batch_forward_addresses() -> None:
    got = run_case("filter_and_batch")
    assert got["ok"]
    assert got["copies"] <= ONE_ARRAY_COPIED
    assert all_but_one(got["shared"])


def test_a_broadcast_branch_changing_arrays_in_place_leaves_the_other_intact() -> None:
    got = run_case("broadcast")
    assert got["ok"]
    assert got["shared"][:6] == [False] * 6  # changed in place: copies
    assert all_but_one(got["shared"][6:])


def test_arrays_in_memory_shared_with_another_process_are_copied() -> None:
    """A shared page is not copied on write: by address, a worker's in-place change of such an
    array used to land in the caller's source."""
    got = run_case("shared_memory_source")
    assert got["ok"]
    assert got["copies"] == 4
