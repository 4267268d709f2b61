"""Run a command that dies with the process that started it: ``python guard.py PARENT_PID
CMD...`` asks the kernel for SIGTERM when its parent dies (Linux ``PR_SET_PDEATHSIG``),
then becomes CMD (``execv``: same pid, same process group, no extra process).

Why: torchrun starts in its own session (so the orchestrator stops a run's whole process
group at will), which also means nothing stops it when the orchestrator is SIGKILLed or
crashes; the next ``ablate run`` would then find a trainer it does not own. The death
signal survives ``execv`` (not a set-user-ID one), so torchrun's agent gets SIGTERM the
moment the orchestrator is gone and, as on any SIGTERM, stops its workers. The kernel
delivers it, so it works for SIGKILL and segfaults, which no watchdog thread in the
orchestrator could see. Set here rather than in ``Popen(preexec_fn=...)``: a
``preexec_fn`` is unsafe in a process with threads. Costs one interpreter start (~50 ms)
per run. The signal follows the *thread* that forked: the orchestrator launches from its
main thread, which lives as long as it does.

This file imports nothing of ablate (it is started by its path), only :mod:`zoo.lifeline`
(standard library only; importable wherever the trainer it starts is), the one place that
arms the signal.
Elsewhere than Linux the command runs unguarded (the orchestrator's run lock probe still
keeps a second trainer off a live one's directory).
"""

from __future__ import annotations

import os
import signal
import sys

from zoo.lifeline import LauncherGone, die_with_parent


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print("usage: guard.py PARENT_PID CMD...", file=sys.stderr)
        return 2
    parent, cmd = int(argv[1]), argv[2:]
    try:
        die_with_parent(parent)
    except LauncherGone:
        # The orchestrator died before the signal was armed: then nobody would send it.
        print("error: the orchestrator exited before its trainer started", file=sys.stderr)
        return 128 + int(signal.SIGTERM)
    except OSError as exc:
        print(f"error: {exc.strerror}", file=sys.stderr)
        return 1
    os.execv(cmd[0], cmd)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv))
