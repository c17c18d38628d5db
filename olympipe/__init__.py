"""olympipe: turn any iterable into a multi-process streaming pipeline.

>>> from olympipe import Pipeline
>>> Pipeline(range(5)).task(lambda x: x * 2).wait_for_result()
[0, 2, 4, 6, 8]
"""

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
from olympipe.errors import RemoteTraceback as RemoteTraceback
from olympipe.errors import WorkerDied as WorkerDied
from olympipe.pipeline import Pipeline as Pipeline
from olympipe.stats import RunStats as RunStats
from olympipe.stats import StageStats as StageStats

__version__ = "3.0.0.dev0"

__all__ = [
    "Pipeline",
    "PipelineError",
    "PipelineExecutionError",
    "RayEngine",
    "RemoteTraceback",
    "RunStats",
    "StageStats",
    "WorkerDied",
    "__version__",
    "class_task",
    "filter",
    "registry",
    "source",
    "source_from",
    "splitter",
    "task",
]
