"""The pipes of one local run: an inbox per stage, a channel per sink, the control channel,
and the windows of credits on the edges that need them (see ``credits``).

The supervisor makes the wiring before any worker starts, hands each worker the ends it
uses, and drops its own copies of the ends only workers use (:meth:`Wiring.close_unused_ends`),
so that a write into a pipe whose readers all died fails instead of blocking forever.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from typing import TYPE_CHECKING

from olympipe._graph import Plan
from olympipe._runtime.credits import Credits, Target, plan_credits
from olympipe._runtime.messages import Control
from olympipe._transport.channel import Channel

if TYPE_CHECKING:
    from olympipe._runtime.worker import WorkerPlan


@dataclass
class Wiring:
    """Every channel of a run, and its credits."""

    control: Control  # Done, Failure and Retired reports, from every worker and feeder
    inboxes: dict[int, Channel]  # node id -> the stage's inbox, shared by its workers
    sinks: list[Channel]  # per sink of the plan: the channel the caller reads
    credits: Credits

    @classmethod
    def make(cls, plan: Plan, ctx: BaseContext, queue_size: int | None) -> Wiring:
        """The channels of ``plan``, made with ``ctx`` (so that replacements can open them)."""
        control = Control(Channel(ctx, sum(n.spec.count for n in plan.nodes), 1))
        inboxes = {node.id: Channel(ctx, plan.producers(node), node.spec.count) for node in plan.stages}
        sinks = [Channel(ctx, sink_node.spec.count, 1) for sink_node, _slot in plan.sinks]
        return cls(control, inboxes, sinks, plan_credits(plan, ctx, queue_size))

    def outputs_of(self, plan: Plan, node_id: int, by_address: bool) -> list[list[Target]]:
        """Per output slot of a node: where its chunks go, each with its window of credits;
        ``by_address``: the run sends what workers already hold by address."""
        out: list[list[Target]] = []
        for slot, consumers in enumerate(plan.consumers[node_id]):
            targets: list[Target] = []
            for index, consumer in enumerate(consumers):
                if consumer.node is not None:
                    channel, port = self.inboxes[consumer.node.id], consumer.port
                    # one input: no two paths bring the same bytes by address to one worker
                    single_input = len(consumer.node.inputs) == 1
                else:
                    assert consumer.sink is not None
                    channel, port, single_input = self.sinks[consumer.sink], 0, True
                window = self.credits.window(node_id, slot, index)
                targets.append(
                    Target(channel, port, window, by_address and single_input, consumer.node is None)
                )
            out.append(targets)
        return out

    def close_unused_ends(
        self, source_outputs: dict[int, list[Target]], workers: Iterable[WorkerPlan]
    ) -> None:
        """Drop the caller's copies of the ends only ``workers`` use; what a replacement will
        need (a replaceable or resizable stage's inbox and outputs), the caller keeps to hand on."""
        fed = {id(target.channel) for targets in source_outputs.values() for target in targets}
        read_by_replaceable = set()
        for plan in workers:
            if plan.journal is not None or plan.retire is not None:
                read_by_replaceable.add(id(plan.inbox))
                fed.update(id(t.channel) for slot in plan.outputs for t in slot)
        for channel in self.inboxes.values():
            if id(channel) not in read_by_replaceable:
                channel.close_reader()
            if id(channel) not in fed:
                channel.close_writer()
        for channel in self.sinks:
            if id(channel) not in fed:
                channel.close_writer()
