"""olympipe: turn any iterable into a multi-process streaming pipeline.

>>> from olympipe import Pipeline
>>> Pipeline(range(5)).task(lambda x: x * 2).wait_for_result()
[0, 2, 4, 6, 8]
"""

from olympipe._engines.ray import RayEngine as RayEngine
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
]
