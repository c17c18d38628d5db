"""How many CPUs this process may really use.

``os.cpu_count()`` and psutil count the machine's CPUs. A process pinned to some of them
(``taskset``, ``sched_setaffinity``) or in a container with a CPU quota (cgroup
``cpu.max``, or ``cpu.cfs_quota_us`` under cgroup v1) may use fewer: sizing workers to
the machine then oversubscribes what it was given. The worker budget (``workers=``) and
the advice of ``stats()`` both start from :func:`usable_cpus`.
"""

from __future__ import annotations

import math
import os

_CGROUP_ROOT = "/sys/fs/cgroup"


def usable_cpus() -> int:
    """The CPUs this process may use: its affinity, capped by a cgroup CPU quota."""
    try:
        allowed = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        allowed = os.cpu_count() or 1
    quota = cgroup_quota()
    if quota is not None:
        allowed = min(allowed, max(1, math.ceil(quota)))
    return max(1, allowed)


def cgroup_quota(root: str = _CGROUP_ROOT, proc_cgroup: str = "/proc/self/cgroup") -> float | None:
    """CPUs' worth of time the process's cgroup may use per period, or ``None`` (no quota)."""
    for path in _cgroup_dirs(root, proc_cgroup):
        quota = _read_quota(path)
        if quota is not None:
            return quota
    return None


def _cgroup_dirs(root: str, proc_cgroup: str) -> list[str]:
    """The cgroup directories that may hold a quota for this process, nearest first."""
    dirs: list[str] = []
    try:
        with open(proc_cgroup) as f:
            lines = f.read().splitlines()
    except OSError:
        return dirs
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _hierarchy, controllers, path = parts
        if controllers == "":  # cgroup v2: one unified hierarchy
            base = root
        elif "cpu" in controllers.split(","):
            base = os.path.join(root, "cpu")
            if not os.path.isdir(base):
                base = os.path.join(root, controllers)
        else:
            continue
        # A quota may sit on any ancestor; in a container the path is often "/".
        path = path.strip("/")
        while True:
            dirs.append(os.path.join(base, path) if path else base)
            if not path:
                break
            path = os.path.dirname(path)
    return dirs


def _read_quota(directory: str) -> float | None:
    try:
        with open(os.path.join(directory, "cpu.max")) as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(directory, "cpu.cfs_quota_us")) as f:
            quota_us = int(f.read())
        with open(os.path.join(directory, "cpu.cfs_period_us")) as f:
            period_us = int(f.read())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None
