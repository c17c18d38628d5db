"""Credits: how far chunks may run ahead of the oldest one still being worked on.

A stage with several workers lets a fast worker take chunk ``k + 1``, ``k + 2``, ... while a
slow one holds chunk ``k``; whoever reads that stage's output in order must keep the later
ones until ``k`` arrives. Without a bound, one slow item lets memory grow without end.

So every edge into such a stage carries a *window*, a semaphore of ``2 * count + 2``
credits (``queue_size`` for the source's first edge; a source under a drop policy gives
one credit per worker of that stage, so that none waits there): a producer takes one credit per chunk
it sends on that edge, and the credit comes back only when the chunk is back in order,
where the stage's output is next read in order (the next single-worker stage, or the
caller's sink). Edges into single-worker stages, and stages that renumber their output as it
completes (``ordered=False``), return the credit as soon as the chunk is processed. The
source's first edge always has a window, so that the feeder never runs far ahead of the
first stage.

A window must never be smaller than the one its chunks already hold. A racing stage takes
credits into the next one in the order its chunks *complete*: with a smaller window there,
chunks that overtook chunk ``k`` could take every credit and then wait, in order, for ``k``,
which waits for a credit. So the edge from a racing stage to the consumer its chunks come
back in order through carries no window of its own (the stage's input window already bounds
those chunks, up to the same place), and any other edge out of a racing stage gets a window
at least as large as the stage's input window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from multiprocessing.context import BaseContext
from multiprocessing.synchronize import Semaphore
from typing import TYPE_CHECKING, NamedTuple

from olympipe._transport.channel import Channel

if TYPE_CHECKING:  # the graph is the caller's: a worker never imports it
    from olympipe._graph import Node, Plan


def default_window(workers: int) -> int:
    """Chunks a stage of ``workers`` workers may hold: one in hand and one waiting per worker
    (so none idles between two chunks), plus two in transit."""
    return 2 * workers + 2


class Target(NamedTuple):
    """Where a producer sends one output slot's chunks: a channel, the consumer's input port
    on it, and the window to take a credit from first (``None``: none)."""

    channel: Channel
    port: int
    window: Semaphore | None
    takes_addresses: bool = False  # a single-input consumer of a run that sends by address
    to_caller: bool = False  # the caller's sink


@dataclass
class Credits:
    """The windows of one run: who takes credits, and who gives them back."""

    windows: dict[tuple[int, int, int], Semaphore] = field(default_factory=dict)  # (node, slot, consumer)
    release_at: dict[int, dict[int, list[Semaphore]]] = field(default_factory=dict)  # node -> port -> windows
    release_at_sink: dict[int, list[Semaphore]] = field(default_factory=dict)  # sink index -> windows
    sizes: list[tuple[Semaphore, int]] = field(default_factory=list)  # every window and its size

    def window(self, node_id: int, slot: int, consumer: int) -> Semaphore | None:
        """The window of one edge, or ``None``."""
        return self.windows.get((node_id, slot, consumer))

    def released_by(self, node_id: int) -> dict[int, list[Semaphore]]:
        """Per input port of a stage: the windows it gives a credit back to per chunk."""
        return self.release_at.get(node_id, {})


def plan_credits(plan: Plan, ctx: BaseContext, queue_size: int | None) -> Credits:
    """Every window of ``plan`` and where its credits come back."""
    credits = Credits()
    server = any(getattr(n.spec, "server", False) for n in plan.sources)
    held: dict[int, int] = {}  # racing node -> the largest window its input chunks hold
    for producer in plan.nodes:  # topological: a producer's input windows are known
        upstream = held.get(producer.id, 0) if _races(producer) else 0
        for slot, consumers in enumerate(plan.consumers[producer.id]):
            for index, consumer in enumerate(consumers):
                node = consumer.node
                if node is None:
                    continue
                first_of_source = producer.is_source and slot == 0 and index == 0
                after_batch = server and getattr(producer.spec, "max_wait", None) is not None
                if not (first_of_source or _races(node) or after_batch):
                    continue
                if upstream and slot == 0 and index == 0:
                    held[node.id] = max(held.get(node.id, 0), upstream)  # see the docstring
                    continue
                size = (queue_size if first_of_source else None) or default_window(node.spec.count)
                if after_batch and not _races(node):
                    # a server's batch waits while the model is busy, and takes in the
                    # requests that come meanwhile: one batch per worker of the next stage
                    size = node.spec.count
                if first_of_source and getattr(producer.spec, "on_full", "block") != "block":
                    # a dropping source: one chunk per worker, so each works on the newest
                    size = queue_size or node.spec.count
                size = max(size, upstream)
                held[node.id] = max(held.get(node.id, 0), size)
                window = ctx.Semaphore(size)
                credits.windows[(producer.id, slot, index)] = window
                credits.sizes.append((window, size))
                where, port = _back_in_order(plan, node, consumer.port)
                if where is None:
                    credits.release_at_sink.setdefault(port, []).append(window)
                else:
                    credits.release_at.setdefault(where.id, {}).setdefault(port, []).append(window)
    return credits


def _races(node: Node) -> bool:
    """Whether the node's workers may finish chunks out of order, keeping their numbers."""
    spec = node.spec
    return spec.count > 1 and not spec.ordered_input and not spec.renumbers_output


def _back_in_order(plan: Plan, node: Node, port: int) -> tuple[Node | None, int]:
    """Where chunks entering ``node`` on ``port`` are next read in order: a node and its
    input port, or ``(None, sink index)`` for the caller."""
    while _races(node):
        consumer = plan.consumers[node.id][0][0]
        if consumer.node is None:
            assert consumer.sink is not None
            return None, consumer.sink
        node, port = consumer.node, consumer.port
    return node, port
