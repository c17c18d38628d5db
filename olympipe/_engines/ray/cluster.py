"""Where the Ray engine's actors go and what they get: the cluster's CPUs and nodes, and the
runtime environment (code and packages) shipped to actors."""

from __future__ import annotations

import os
import types
from typing import Any

from olympipe._core.cpus import usable_cpus


def local_paths(runtime_env: dict[str, Any] | None) -> dict[str, Any] | None:
    """``py_modules`` given as module objects or paths, as the strings that actor options
    take (``ray.init`` converts them itself; an actor's options do not)."""
    if runtime_env is None or "py_modules" not in runtime_env:
        return runtime_env
    paths = []
    for module in runtime_env["py_modules"]:
        if isinstance(module, types.ModuleType):
            path = getattr(module, "__path__", None)
            module = next(iter(path)) if path else module.__file__
        paths.append(os.fspath(module))
    return {**runtime_env, "py_modules": paths}


def uploaded(ray: Any, runtime_env: dict[str, Any] | None) -> dict[str, Any] | None:
    """A runtime_env for actor options: Ray uploads local ``py_modules`` and ``working_dir``
    only for a job's runtime_env (at ``ray.init``), so do what it does there."""
    if runtime_env is None or not ({"py_modules", "working_dir"} & set(runtime_env)):
        return runtime_env
    # Ray has no public call for this (its uploads live in ray._private, which a Ray release
    # may move): an import or attribute that is gone becomes a clear error with a way out.
    try:
        from ray._private.runtime_env.py_modules import upload_py_modules_if_needed
        from ray._private.runtime_env.working_dir import upload_working_dir_if_needed

        scratch = ray._private.worker.global_worker.node.get_runtime_env_dir_path()
    except (ImportError, AttributeError) as exc:
        raise RuntimeError(
            f"this Ray ({getattr(ray, '__version__', '?')}) cannot upload local py_modules or"
            " working_dir for the actors' runtime_env; give the runtime_env to ray.init()"
            " before the run instead (the actors then inherit it)"
        ) from exc
    env = upload_py_modules_if_needed(dict(runtime_env), include_gitignore=True, scratch_dir=scratch)
    return dict(upload_working_dir_if_needed(env, include_gitignore=True, scratch_dir=scratch))


def cluster_cpus(ray: Any) -> int:
    """The CPUs of the cluster this process is connected to, else of this process (a
    cluster started for the run is started on this machine)."""
    if ray.is_initialized():
        return max(1, int(ray.cluster_resources().get("CPU", 1)))
    return usable_cpus()


def alive_nodes(ray: Any) -> list[str | None]:
    """The ids of the cluster's alive nodes that have CPUs (``[None]`` if Ray says none)."""
    ids = [n["NodeID"] for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU")]
    return ids or [None]


def on_node(ray: Any, node_id: str | None) -> Any:
    if node_id is None:
        return "DEFAULT"
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)
