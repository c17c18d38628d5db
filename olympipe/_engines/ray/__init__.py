"""The Ray engine: each stage worker is a Ray actor; the driver orchestrates.

For each chunk of source items the driver calls the first stage's actor, hands the
returned object refs to the next stage's actor, and so on: data moves from actor to actor
through Ray's object store and never through the driver. Per chunk, the driver keeps the
refs of what reaches each sink in a deque, popped in submission order: that deque is both
the order (chunk ``k`` before chunk ``k + 1``) and the backpressure (at most
``max_in_flight`` chunks submitted and not yet collected).

Stateful stages (batch, reduce, limit, ...) are one actor; one caller's calls to one actor
run in submission order, so they see their input in order. Adjacent per-item stages with the
same worker count and no branch between them are fused into one actor call (an actor call
costs about a millisecond of CPU), unless ``RayEngine(fuse=False)``.

An ``explode`` streams: a call returns one part of its outputs and the actor keeps the
rest; collecting the call submits the next part ahead of every later chunk. A stateful
stage behind an explode (or behind a crash-isolated stage, whose chunks may be made again)
is *held back*: its calls are made when their submission is collected, in order.

The modules, each with one owner:

* ``engine.py``: ``RayEngine``, its options; ``cluster.py``: connection and placement;
* ``planning.py``: fusion into groups and hold-back (pure, tested without Ray); ``pools.py``:
  ``count="auto"`` pools resized by the core's controller;
* ``run.py``: one run, submission and collection in order; ``inflight.py``: what the driver
  keeps per submission; ``source.py``: the source thread and how its chunks are cut;
  ``metering.py``: the counters calls report, the chunk numbers and the stats table;
* ``actors.py``: every actor's life (made, replaced, recycled, grown, retired, killed) and
  Ray's errors told as the local engine's; ``repair.py``: a crashed submission made again;
  ``drops.py``: ``on_full=`` on a stage;
* ``actor.py``: the body of an actor (no Ray import).

Decisions that differ from the local engine (see docs/API.md):

* ``timeout`` is judged by the driver: the stream ends when nothing is in flight and the
  source has given nothing for that long.
* ``temporal_batch`` closes a window when the next chunk reaches it, or at the end.
* A dead actor of fused stages is reported under the first of them; the message names all.
"""

from olympipe._engines.ray.engine import INSTALL_HINT, RayEngine

__all__ = ["INSTALL_HINT", "RayEngine"]
