"""Reading a sandbox's process tree from the host's /proc (the parent's watchdog).

Every process of a run descends from its first process: in a pid namespace orphans are
re-parented to that process (it is the namespace's init); at the basic level it is a
child subreaper. So walking ``/proc/<pid>/task/<tid>/children`` from it finds them all.
CPU time sums ``utime + stime + cutime + cstime`` over the tree, so time of children
that were waited for stays counted after they exit.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass, field

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class TreeStats:
    """A snapshot of a process tree."""

    pids: list[int] = field(default_factory=list)
    starts: dict[int, int] = field(default_factory=dict)  # pid -> start time (guards pid reuse)
    tasks: int = 0
    rss_bytes: int = 0
    cpu_s: float = 0.0


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: split after the last ')'.
    return raw[raw.rindex(b")") + 2 :].decode().split()


def children(pid: int) -> list[int]:
    """Direct children of every thread of ``pid``."""
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as fh:
                out.extend(int(x) for x in fh.read().split())
        except OSError:
            continue
    return out


def tree_stats(root: int, limit: int = 4096) -> TreeStats:
    """Stats of ``root`` and its descendants (at most ``limit`` processes are visited)."""
    stats = TreeStats()
    stack, seen = [root], set[int]()
    while stack and len(seen) < limit:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        fields = _stat(pid)
        if fields is None:
            continue
        # After the comm: state=0 ppid=1 ... utime=11 stime=12 cutime=13 cstime=14
        # num_threads=17 rss=21 (0-based in this tail).
        stats.pids.append(pid)
        stats.starts[pid] = int(fields[19])
        stats.cpu_s += sum(int(fields[i]) for i in (11, 12, 13, 14)) / _TICK
        stats.tasks += int(fields[17])
        stats.rss_bytes += int(fields[21]) * _PAGE
        stack.extend(children(pid))
    return stats


def pss_bytes(pids: list[int]) -> int:
    """Proportional resident memory: pages shared after fork are counted once overall."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
                for line in fh:
                    if line.startswith(b"Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
    return total


def start_time(pid: int) -> int | None:
    fields = _stat(pid)
    return None if fields is None else int(fields[19])


def kill_tree(seen: dict[int, int]) -> None:
    """Stop, then kill, every process in the trees of ``seen`` (basic level only).

    ``seen`` maps pids met earlier (the run's first process included) to their start
    times, so a pid the kernel has reused for an unrelated process is never signalled.
    Stopping first keeps a fork bomb from outrunning the walk.
    """
    hit: dict[int, int] = {}
    for _ in range(50):
        found: dict[int, int] = {}
        for pid, started in [*seen.items(), *hit.items()]:
            if start_time(pid) == started:
                found.update(tree_stats(pid).starts)
        new = set(found) - set(hit)
        for pid in found:
            _signal(pid, signal.SIGSTOP)
        hit.update(found)
        if not new:
            break
    for pid, started in hit.items():
        if start_time(pid) == started:
            _signal(pid, signal.SIGKILL)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)
