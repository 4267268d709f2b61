"""A process that ends when the process that started it ends (Linux ``PR_SET_PDEATHSIG``).

torchrun starts its workers in sessions of their own (``start_new_session``), so a
launcher that dies without stopping them (SIGKILL, the OOM killer, a crash) leaves
trainers running that nobody waits for: locally they hold the run's lock until they end;
under SLURM they outlive the step that tracked their launcher. A trainer started by
torchrun therefore asks the kernel for SIGTERM when its launcher ends
(:func:`die_with_launcher`); ablate's guard asks the same for torchrun when the
orchestrator ends (``ablate/launch/guard.py``).

The kernel sends the signal when the *thread* that forked the process exits; torchrun's
agent starts workers from its main thread, and the orchestrator launches from its own.
Imports nothing but the standard library: the guard loads it before anything else.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1

#: Set by torchrun's elastic agent in each worker's environment.
TORCHRUN_ENV = "TORCHELASTIC_RUN_ID"


class LauncherGone(RuntimeError):
    """The parent ended before its death signal was armed: nobody would send it."""


def die_with_parent(parent: int, sig: int = signal.SIGTERM) -> bool:
    """Ask for ``sig`` when the parent ends; True where armed (Linux), False elsewhere.
    ``parent``: its pid as read before arming: if the process has another parent after
    arming, the parent already ended (it was re-parented), and :class:`LauncherGone`
    says so. A failed ``prctl`` is an :class:`OSError`."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_PDEATHSIG): {os.strerror(err)}")
    if os.getppid() != parent:
        raise LauncherGone(f"the process that started this one ({parent}) has exited")
    return True


def die_with_launcher() -> bool:
    """In a worker started by torchrun: SIGTERM when torchrun's agent ends (True where
    armed). Started otherwise (by hand, ``nohup``, a notebook) it does nothing: a trainer
    may outlive the shell that started it. torchrun exports no pid of its agent, so the
    parent is read here: an agent that dies between that read and the arming is caught
    (:class:`LauncherGone`); one already gone before the read is not (the trainer then
    runs on under its reaper, the run's lock keeping a second trainer off, as before)."""
    if TORCHRUN_ENV not in os.environ:
        return False
    return die_with_parent(os.getppid())
