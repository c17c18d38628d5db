"""Engines: where the stages of a plan run.

The layers, each ignorant of the one above it::

    Pipeline (pipeline.py)          builds immutable graph nodes; a terminal call asks
        |                           for the plan of the sinks it names
        v
    Plan (_graph.py)                nodes in topological order, who consumes what,
        |                           unique stage labels
        v
    Engine (_engines/)              start a run of the plan; events in order; stats; close
        |-- local   (_runtime/)     one process per stage worker, chunks over OS pipes
        |-- inline  (inline.py)     every stage in the caller's thread, item by item
        `-- ray     (ray.py)        one actor per stage worker, chunks in Ray's object store
        v
    Stages (_stages/)               what each operator does to a chunk; no processes

The path of one item on the local engine: the feeder thread pulls it from the source and
puts it in a chunk, which is pickled once and written to the first stage's inbox pipe; a
worker process reads the chunk, runs ``stage.process(chunk)`` and writes the output chunk,
numbered as its input was, to each consumer's inbox; the caller reads the sink pipes,
restores chunk order and yields the items. Every engine yields the same ``(sink, chunk)``
events in the same order per sink.
"""

from __future__ import annotations

from olympipe._engines.base import Engine, Execution, resolve_engine

__all__ = ["Engine", "Execution", "resolve_engine"]
