"""The local runtime: one process per stage worker, a feeder thread, and their supervisor."""
