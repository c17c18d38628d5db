"""The engine-independent core: decisions every engine takes the same way.

Nothing here starts a process or imports an engine: each module is a set of pure
functions over a :class:`~olympipe._graph.Plan` and measured figures, so it is unit-tested
without processes and shared by the local, inline and Ray engines.
"""
