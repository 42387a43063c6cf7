"""How many CPUs this process may use: the default of ``pdp serve --workers``.

The affinity mask says which cores the process may run on, but a container is usually limited
by a CPU *quota* instead (Kubernetes ``resources.limits.cpu``): a pod limited to 1 CPU on a
64-core node sees 64 cores in its mask. So the count is the smaller of the two, the quota
rounded up (1.5 CPUs: 2 workers, which together may use the whole quota), at least 1.

The quota is read from the cgroup the process is in (``/proc/self/cgroup``): cgroup v2's
``cpu.max`` ("max 100000" is no limit; "150000 100000" is 1.5 CPUs) or cgroup v1's
``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (-1 is no limit), taking the tightest limit on
the way up to the root. Missing or unreadable files mean no limit.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def cpu_count(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """The CPUs this process may use: affinity, capped by the cgroup CPU quota (rounded up)."""
    cores = affinity_count()
    quota = cgroup_cpu_quota(cgroup_root, proc_cgroup)
    if quota is None:
        return cores
    return max(1, min(cores, math.ceil(quota)))


def affinity_count() -> int:
    """Cores this process may run on (its affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def cgroup_cpu_quota(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (1.5 = one and a half), None if unlimited."""
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:
        lines = []
    limits = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":  # cgroup v2: "0::/path"
            limits += [_v2_limit(d) for d in _ancestors(Path(cgroup_root), path)]
        elif "cpu" in controllers.split(","):  # cgroup v1: "4:cpu,cpuacct:/path"
            mount = Path(cgroup_root) / controllers
            if not mount.is_dir():
                mount = Path(cgroup_root) / "cpu"
            limits += [_v1_limit(d) for d in _ancestors(mount, path)]
    if not lines:  # no /proc/self/cgroup: the root given is the process's own cgroup
        limits = [_v2_limit(Path(cgroup_root)), _v1_limit(Path(cgroup_root) / "cpu")]
    found = [limit for limit in limits if limit is not None]
    return min(found) if found else None


def _ancestors(mount: Path, path: str) -> list[Path]:
    """The cgroup folders from the process's own up to the mount. Inside a container the
    mount is often the container's own cgroup while /proc/self/cgroup names the host's path,
    which does not exist there: then the mount alone is the process's cgroup."""
    own = mount / path.strip("/")
    if not own.is_dir():
        return [mount]
    folders = [own]
    while own != mount and mount in own.parents:
        own = own.parent
        folders.append(own)
    return folders


def _v2_limit(folder: Path) -> float | None:
    try:
        quota, _, period = (folder / "cpu.max").read_text().strip().partition(" ")
        if quota == "max":
            return None
        return int(quota) / int(period or 100_000)
    except (OSError, ValueError, ZeroDivisionError):
        return None


def _v1_limit(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    if quota <= 0 or period <= 0:  # -1: no limit
        return None
    return quota / period
