"""Every actor of one Ray run: made, replaced, recycled, grown and retired, closed and
killed; and a Ray error told as the error the local engine would raise."""

from __future__ import annotations

import itertools
import time
from typing import Any

from olympipe._engines.inline import error_from
from olympipe._engines.ray.actor import StageActor, StageFailed
from olympipe._engines.ray.cluster import alive_nodes, on_node, uploaded
from olympipe._engines.ray.planning import Group
from olympipe._runtime.counters import FIELDS, RECYCLED, Counters
from olympipe._transport.codec import dumps_definition
from olympipe.errors import PipelineError, WorkerDied

KILL_CONFIRM_SECONDS = 10.0  # how long close() waits for Ray to confirm the actors' deaths


class Actors:
    """The actors of a run's groups (``group.actors``), and those on their way out."""

    def __init__(self, ray: Any, engine: Any, groups: list[Group], counters: Counters) -> None:
        self._ray = ray
        self._engine = engine
        self._groups = groups
        self._counters = counters
        self._group_of_actor: dict[str, Group] = {}  # actor id -> its group, for errors
        self._retired: list[Any] = []  # replaced or retired actors: killed with the others
        self._closing: list[tuple[Any, Any]] = []  # closing actors and their close() refs
        self.started_ray = False

    def start(self) -> None:
        """Connect to (or start) Ray, create every group's actors, wait until they are built."""
        ray = self._ray
        engine = self._engine
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False}
            if engine.runtime_env is not None:
                kwargs["runtime_env"] = engine.runtime_env
            kwargs.update(engine.init_kwargs)
            ray.init(address=engine.address, **kwargs)
            self.started_ray = True
            actor_env = None  # the job's runtime_env already holds it
        else:
            actor_env = uploaded(ray, engine.runtime_env)
        actor_class = ray.remote(StageActor)
        nodes = itertools.cycle(alive_nodes(ray))
        for group in self._groups:
            definition = dumps_definition([n.spec for n in group.nodes])
            chosen: dict[str, Any] = {}
            for label in group.labels:
                chosen.update(engine.stage_options.get(label, {}))

            def make_actor(definition: Any = definition, chosen: Any = chosen, group: Group = group) -> Any:
                # No CPU reserved unless asked: workers share cores, as processes do
                # locally, so more workers than CPUs still run. A stage's workers go round
                # the nodes (Ray's SPREAD leaves zero-CPU actors on one node).
                options: dict[str, Any] = {"num_cpus": 0, "max_restarts": 0}
                options["scheduling_strategy"] = on_node(ray, next(nodes))
                if actor_env is not None:  # a Ray this process had initialised already
                    options["runtime_env"] = actor_env
                options.update(chosen)
                actor = actor_class.options(**options).remote(definition, group.labels, engine.zero_copy)
                self._group_of_actor[actor._actor_id.hex()] = group
                return actor

            group.make_actor = make_actor
            for _ in range(group.count):
                group.actors.append(make_actor())
                group.outstanding.append(0)
                group.sent.append(0)
        try:
            ray.get([a.ready.remote() for g in self._groups for a in g.actors])
        except Exception as exc:
            raise self.translate(exc)

    # -- replacing ----------------------------------------------------------------------------

    def died(self, exc: BaseException) -> bool:
        """Whether ``exc`` says an actor died."""
        return isinstance(exc, self._ray.exceptions.RayActorError)

    def replace(self, group: Group, index: int, counter: int | None) -> None:
        """A new actor in place of actor ``index`` (its calls' figures add to the same
        rows); ``counter``: ``CRASHES`` or ``RECYCLED``, counted on the group's first stage."""
        old = group.actors[index]
        self._retired.append(old)
        if counter != RECYCLED:
            try:
                self._ray.kill(old, no_restart=True)
            except Exception:  # already dead
                pass
        if counter is not None:
            self._counters.array[group.rows[index][0] * FIELDS + counter] += 1
        group.actors[index] = group.make_actor()
        group.sent[index] = 0
        if counter != RECYCLED:
            try:
                self._ray.get(group.actors[index].ready.remote())
            except Exception as exc:
                raise self.translate(exc)

    def ensure_alive(self, group: Group, index: int) -> None:
        """Actor ``index`` answers, or (in a crash-isolated group) is replaced."""
        try:
            self._ray.get(group.actors[index].ready.remote())
        except Exception as exc:
            if not (self.died(exc) and group.isolates_crashes):
                raise self.translate(exc)
            self.replace(group, index, None)  # counted when its item is found

    def recycle_if_spent(self, group: Group, index: int, items: int) -> None:
        """``max_items_per_worker``: an actor whose budget this chunk would exceed closes
        (after its queued calls: ``close_method`` runs in it) and a fresh one takes over."""
        limit = group.items_per_worker
        assert limit is not None
        if group.sent[index] and group.sent[index] + items > limit:
            old = group.actors[index]
            self._closing.append((old, old.close.remote()))
            self.replace(group, index, RECYCLED)
            self.reap_closed()
        group.sent[index] += items

    # -- count="auto" -------------------------------------------------------------------------

    def grow(self, group: Group, place: int) -> None:
        """A new actor in ``place``, the first one past the live ones."""
        actor = group.make_actor()
        if place < len(group.actors):
            group.actors[place] = actor  # a place whose actor retired
            group.outstanding[place] = 0
        else:
            group.actors.append(actor)
            group.outstanding.append(0)
            group.sent.append(0)
        group.count = place + 1

    def retire(self, group: Group, place: int) -> None:
        """The actor of ``place`` (the last live one) takes no new chunk; it closes after
        its queued calls and is killed once it has (:meth:`reap_closed`)."""
        group.count = place
        actor = group.actors[place]
        self._retired.append(actor)
        self._closing.append((actor, actor.close.remote()))

    def still_closing(self) -> bool:
        """Whether an actor on its way out has not closed yet."""
        self.reap_closed()
        return bool(self._closing)

    def reap_closed(self) -> None:
        """Kill the actors on their way out that have closed, so that idle ones do not pile up."""
        ray = self._ray
        refs = [ref for _actor, ref in self._closing]
        done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        if not done:
            return
        finished = set(done)
        still = []
        for actor, ref in self._closing:
            if ref not in finished:
                still.append((actor, ref))
                continue
            try:
                ray.get(ref)
            except Exception as exc:  # close_method failed: the run's failure
                raise self.translate(exc)
            ray.kill(actor, no_restart=True)
        self._closing = still

    # -- ending -------------------------------------------------------------------------------

    def close_live(self) -> None:
        """After a clean end: close every stage (``close_method`` runs), those on their way
        out included; the actors are killed by :meth:`kill_all`."""
        try:
            closing, self._closing = [ref for _actor, ref in self._closing], []
            live = [a for g in self._groups for a in g.actors[: g.count]]
            self._ray.get([*closing, *(a.close.remote() for a in live)])
        except Exception as exc:
            raise self.translate(exc)

    def kill_all(self) -> None:
        """Kill every actor and wait until Ray confirms each death: ``ray.kill`` returns at
        once, and a call right after it can still be served."""
        ray = self._ray
        alive = [*self._retired, *(a for g in self._groups for a in g.actors)]
        self.read_quietly([ref for _actor, ref in self._closing])
        for actor in alive:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # already dead
                pass
        deadline = time.monotonic() + KILL_CONFIRM_SECONDS
        while alive and time.monotonic() < deadline:
            probes = [(actor, actor.ready.remote()) for actor in alive]
            alive = []
            for actor, probe in probes:
                try:
                    ray.get(probe, timeout=max(0.1, deadline - time.monotonic()))
                    alive.append(actor)  # served before the kill landed: ask again
                except ray.exceptions.GetTimeoutError:
                    alive.append(actor)
                except Exception:  # RayActorError: dead, as wanted
                    pass

    def read_quietly(self, refs: list[Any]) -> None:
        """Read refs whose errors were reported already (or are the kill's own): Ray logs an
        "Unhandled error" for each failed ref dropped unread. Dead actors answer at once."""
        if not refs:
            return
        ray = self._ray
        ready, _pending = ray.wait(refs, num_returns=len(refs), timeout=KILL_CONFIRM_SECONDS)
        for ref in ready:
            try:
                ray.get(ref)
            except Exception:  # the failure the run already reported, or the kill
                pass

    # -- errors -------------------------------------------------------------------------------

    def translate(self, exc: BaseException) -> PipelineError:
        """A Ray error as the error the local engine would raise."""
        cause = getattr(exc, "cause", None)
        if not isinstance(cause, StageFailed) and type(exc) is StageFailed:
            cause = exc
        if isinstance(cause, StageFailed):
            return cause.failure.to_error()
        if self.died(exc):
            group = self._group_of_actor.get(getattr(exc, "actor_id", None) or "")
            if group is not None:
                return died(group, exc)
            return died(self._groups[0], exc) if self._groups else PipelineError(str(exc), stage="ray")
        if isinstance(exc, PipelineError):
            return exc
        return error_from("ray", exc)


def died(group: Group, exc: BaseException) -> WorkerDied:
    """The error for an actor of ``group`` that died."""
    names = ", ".join(repr(label) for label in group.labels)
    detail = f"a Ray actor death (running {names}): {str(exc).splitlines()[0] if str(exc) else exc!r}"
    return WorkerDied(stage=group.labels[0], exitcode=None, detail=detail)
