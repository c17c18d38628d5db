"""What each stage does, as plain objects that know nothing about processes.

A *spec* (a frozen dataclass) is what the builder records and what travels to a worker;
``spec.make()`` builds the *stage* inside the worker. A stage turns a chunk (a list of
items) into a chunk, keeps its own state, and is unit-tested in-process.
"""
