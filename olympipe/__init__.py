"""olympipe: turn any iterable into a multi-process streaming pipeline.

>>> from olympipe import Pipeline
>>> Pipeline(range(5)).task(lambda x: x * 2).wait_for_result()
[0, 2, 4, 6, 8]

The public names are loaded on first use (PEP 562), so that a worker process, which imports
only the runtime, does not pay for the builder, the engines or the HTTP server.
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from olympipe import registry as registry
    from olympipe._engines.ray import RayEngine as RayEngine
    from olympipe.decorators import class_task as class_task
    from olympipe.decorators import filter as filter
    from olympipe.decorators import source as source
    from olympipe.decorators import source_from as source_from
    from olympipe.decorators import splitter as splitter
    from olympipe.decorators import task as task
    from olympipe.errors import PipelineError as PipelineError
    from olympipe.errors import PipelineExecutionError as PipelineExecutionError
    from olympipe.errors import ProgressFileError as ProgressFileError
    from olympipe.errors import RemoteTraceback as RemoteTraceback
    from olympipe.errors import WorkerDied as WorkerDied
    from olympipe.pipeline import Pipeline as Pipeline
    from olympipe.stats import RunStats as RunStats
    from olympipe.stats import StageStats as StageStats

__version__ = "3.0.0.dev0"

_WHERE = {
    "Pipeline": "olympipe.pipeline",
    "PipelineError": "olympipe.errors",
    "PipelineExecutionError": "olympipe.errors",
    "ProgressFileError": "olympipe.errors",
    "RayEngine": "olympipe._engines.ray",
    "RemoteTraceback": "olympipe.errors",
    "RunStats": "olympipe.stats",
    "StageStats": "olympipe.stats",
    "WorkerDied": "olympipe.errors",
    "class_task": "olympipe.decorators",
    "filter": "olympipe.decorators",
    "source": "olympipe.decorators",
    "source_from": "olympipe.decorators",
    "splitter": "olympipe.decorators",
    "task": "olympipe.decorators",
}

__all__ = [*sorted(_WHERE), "__version__", "registry"]


def __getattr__(name: str) -> _typing.Any:
    if name == "registry":
        value: _typing.Any = _importlib.import_module("olympipe.registry")
    elif name in _WHERE:
        value = getattr(_importlib.import_module(_WHERE[name]), name)
    else:
        raise AttributeError(f"module 'olympipe' has no attribute {name!r}")
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
