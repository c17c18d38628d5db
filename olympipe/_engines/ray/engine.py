"""``RayEngine``: the engine object a user passes; it checks its options and starts runs."""

from __future__ import annotations

import importlib.util
from typing import Any

from olympipe._engines.ray.cluster import local_paths
from olympipe._engines.ray.run import RayRun
from olympipe._graph import Plan, RunOptions, SourceSpec

INSTALL_HINT = 'the Ray engine needs Ray: pip install "olympipe[ray]"'


class RayEngine:
    """Runs the pipeline on a Ray cluster: ``Pipeline(...).wait_for_result(engine=RayEngine())``.

    ``address``: the cluster (``"auto"``, ``"ray://head:10001"``; ``None``: ``RAY_ADDRESS``, a
    Ray already initialised in this process, or a local Ray started for the run and shut
    down after it). ``runtime_env`` (code and packages to ship) goes to ``ray.init`` when
    olympipe starts Ray, else to every actor; ``init_kwargs`` go to ``ray.init``;
    ``stage_options`` maps a stage name to Ray actor options (``num_gpus``, ``resources``,
    ``scheduling_strategy``, ...). ``chunk_size`` fixes the items per actor call (default:
    adaptive), ``max_in_flight`` the chunks submitted and not yet collected.
    ``zero_copy``: stages get the numpy arrays of Ray's object store as they are, read-only
    (default: writable copies, so that a stage may change its input in place).
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        runtime_env: dict[str, Any] | None = None,
        init_kwargs: dict[str, Any] | None = None,
        stage_options: dict[str, dict[str, Any]] | None = None,
        chunk_size: int | None = None,
        max_in_flight: int | None = None,
        fuse: bool = True,
        zero_copy: bool = False,
        max_workers: int | None = None,
    ) -> None:
        if importlib.util.find_spec("ray") is None:
            raise ImportError(INSTALL_HINT)
        for value, what in (
            (chunk_size, "chunk_size"),
            (max_in_flight, "max_in_flight"),
            (max_workers, "max_workers"),
        ):
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{what} must be an int, got {type(value).__name__}")
            if value < 1:
                raise ValueError(f"{what} must be an int >= 1, got {value!r}")
        for flag, what in ((fuse, "fuse"), (zero_copy, "zero_copy")):
            if not isinstance(flag, bool):
                raise TypeError(f"{what} must be a bool, got {type(flag).__name__}")
        self.address = address
        self.runtime_env = local_paths(runtime_env)
        self.init_kwargs = dict(init_kwargs or {})
        self.stage_options = dict(stage_options or {})
        self.chunk_size = chunk_size
        self.max_in_flight = max_in_flight
        self.fuse = fuse
        self.zero_copy = zero_copy
        self.max_workers = max_workers  # the budget of count="auto" stages; None: the cluster's CPUs

    def execute(self, plan: Plan, options: RunOptions) -> RayRun:
        """A not yet started run of ``plan`` on Ray."""
        for node in plan.sources:
            if isinstance(node.spec, SourceSpec) and node.spec.server:
                raise TypeError("a server pipeline runs on the local engine only")
        unknown = set(self.stage_options) - set(plan.labels.values())
        if unknown:
            raise ValueError(f"stage_options names no stage of this pipeline: {sorted(unknown)}")
        return RayRun(self, plan, options)
