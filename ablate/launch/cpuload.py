"""How many of this machine's cores are idle now, from the kernel's CPU counters.

A trainer's OpenMP threads wait for each other at every parallel region; whether a waiting
thread should spin a while or sleep at once depends on whether other work wants the cores
(bench/threads.py). The local launcher asks :func:`idle_cores` as it starts each trainer.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

#: The kernel's CPU time counters (Linux); elsewhere :func:`idle_cores` says None.
PROC_STAT = Path("/proc/stat")

#: Seconds :func:`idle_cores` watches the counters: ten of the kernel's 10 ms ticks per
#: core, enough to tell a busy core from an idle one (the verdict has half a core's slack),
#: short beside a run's start (the orchestrator waits it once per CPU run).
WINDOW_S = 0.1


def _mine() -> set[str] | None:
    """The names of the cores this process may run on (``cpu0``...), None: all of them."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    return {f"cpu{n}" for n in os.sched_getaffinity(0)}


def _counters(cores: set[str] | None) -> tuple[int, int, int]:
    """(idle, total) CPU time since boot, in ticks, summed over ``cores`` (None: the
    machine's ``cpu`` line), and how many cores that is. Each line of /proc/stat is
    ``cpuN user nice system idle iowait irq softirq steal guest guest_nice``."""
    wanted = {"cpu"} if cores is None else cores
    idle = total = n = 0
    for line in PROC_STAT.read_text().splitlines():
        name, *fields = line.split()
        if name not in wanted:
            continue
        ticks = [int(v) for v in fields[:8]]  # guest time is inside user time already
        idle, total, n = idle + ticks[3] + ticks[4], total + sum(ticks), n + 1
    return idle, total, (os.cpu_count() or 1) if cores is None else n


def idle_cores(window_s: float = WINDOW_S) -> float | None:
    """Cores' worth of CPU time nobody used over the next ``window_s`` seconds, of the
    cores this process may run on (0 to their number), or None where the counters cannot
    be read."""
    cores = _mine()
    try:
        idle0, total0, n = _counters(cores)
        time.sleep(window_s)
        idle1, total1, _ = _counters(cores)
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0 or n == 0:
        return None
    return n * (idle1 - idle0) / (total1 - total0)


def cores_taken(threads: int, window_s: float = WINDOW_S) -> bool:
    """Whether ``threads`` threads would share cores with other work now: fewer idle cores
    than threads (half a core's slack for the counters' noise). One thread waits for no
    sibling, so it never is; unknown counters say no."""
    if threads <= 1:
        return False
    idle = idle_cores(window_s)
    return idle is not None and idle < threads - 0.5
