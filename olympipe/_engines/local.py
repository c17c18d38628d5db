"""The local engine: worker processes on this machine (the runtime in ``olympipe/_runtime``)."""

from __future__ import annotations

from olympipe._graph import Plan, RunOptions
from olympipe._runtime.supervisor import Run


class LocalEngine:
    """Runs each stage worker as a process of this machine; the default engine."""

    name = "local"

    def execute(self, plan: Plan, options: RunOptions) -> Run:
        """A not yet started run of ``plan`` in worker processes."""
        return Run(plan, options)
