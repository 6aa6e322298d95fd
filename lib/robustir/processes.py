"""The runner owns its children: pool workers and notebook kernels die with it, and a job runs once.

A grid runner starts worker processes, and each worker starts a Jupyter kernel per notebook (in a
session of its own, where the runner's process group does not reach). Killed by any signal, the
runner must leave none of them behind: a kernel that lived on would finish its job minutes later
and write to the store while a rerun does the same job again. On Linux every worker and every
kernel asks to be sent ``SIGKILL`` when its parent dies (``prctl(PR_SET_PDEATHSIG)``), so killing
the runner alone or its whole process group ends them all within moments; elsewhere the children
are ended when the runner exits normally or is interrupted.

Two runners on the same store (two terminals, ``make book`` beside ``robustir run``) never run
the same job at once: :func:`job_lock` holds an advisory lock (``fcntl.flock``) on a lock file
beside the job's results entry for as long as the job runs; the operating system releases it
when its holder dies, however it dies.

Used in the book: "Reproducing at paper scale" (killing and rerunning the runner).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager

__all__ = ["OwnedKernelManager", "die_with_parent", "end_children", "interrupts_held", "job_lock",
           "start_worker"]

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _prctl():
    """libc's ``prctl``, looked up before any fork (loading a library in a forked child of a
    process with threads can deadlock); None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    return ctypes.CDLL(None, use_errno=True).prctl


_PRCTL = _prctl()


def die_with_parent(parent_pid: int) -> None:
    """Have Linux send this process ``SIGKILL`` when its parent dies (no-op elsewhere).

    Args:
        parent_pid: The parent's process id, read before this process started: when the
            parent has died already, this process exits at once.
    """
    if _PRCTL is None:
        return
    if _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:
        os._exit(1)  # the parent died before the request was in place


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold Ctrl-C (``SIGINT``) back while the block runs, and deliver it afterwards.

    Worker processes started in the block begin with ``SIGINT`` blocked, as the mask is
    inherited, until :func:`start_worker` ignores it: a Ctrl-C while a worker starts up is then
    neither lost by the runner nor turned into a traceback by the worker.
    """
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def start_worker(parent_pid: int) -> None:
    """Initializer of a runner's worker process: die with the runner, and leave Ctrl-C to it
    (it ends its workers itself, so that an interrupt prints one line, not one traceback per
    worker)."""
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # see interrupts_held


def _kernel_preexec(parent_pid: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # the kernel's own interrupts keep working
    die_with_parent(parent_pid)


class OwnedKernelManager(AsyncKernelManager):
    """The kernel manager papermill uses for the runner's notebooks: each kernel dies with the
    process that started it (:func:`die_with_parent`)."""

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw) -> None:
        parent = os.getpid()
        kw["preexec_fn"] = lambda: _kernel_preexec(parent)
        await super()._async_launch_kernel(kernel_cmd, **kw)


def end_children() -> None:
    """Kill this process's worker processes at once (their kernels follow them)."""
    for child in multiprocessing.active_children():
        child.kill()
    for child in multiprocessing.active_children():
        child.join(timeout=5)


@contextlib.contextmanager
def job_lock(entry: Path, label: str) -> Iterator[None]:
    """Hold the lock of the job writing ``entry`` while the block runs.

    The lock file is ``<entry's parent>/.<entry name>.lock``; a second runner waits here until
    the first one's job has ended (or the first runner has died).

    Args:
        entry: The job's results-store entry.
        label: The job's label, for the log.
    """
    entry.parent.mkdir(parents=True, exist_ok=True)
    path = entry.parent / f".{entry.name}.lock"
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.warning("%s is being run by another runner; waiting for it (%s)", label, path)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
