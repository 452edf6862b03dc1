"""Run a block of VW work under Linux's ``SCHED_BATCH`` policy: VW's two driver threads hand over in batches.

VW's C++ driver (``recommender.policy.vw.run_driver``) parses on a thread of its own and passes every
example (a replayed row is 22 of them at 20 candidates) to the learning thread through a queue that wakes
the other side on every push and pop (``VW::thread_safe_queue``, notify_all in both). When the two threads
share a core -- as soon as two replays run on a 2-core machine -- each wake-up preempts the running thread:
one context switch per example. Measured on one core (``taskset -c 0``), a 20,000-row replay from VW's cache
took 0.91 s of CPU, 0.39 s of it in the kernel, with ~80,000 context switches; under ``SCHED_BATCH`` (no
wake-up preemption: each side runs until the queue is full or empty, or the tick) 0.46 s, 0.07 s in the
kernel. With an idle second core the threads still run side by side. Scheduling only: the output is the same.

The policy is per thread and inherited by threads started inside the block (VW's parser thread), so it is
set on the calling thread for the block and restored after.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def batch_scheduling() -> Iterator[None]:
    """The calling thread (and the threads it starts) ``SCHED_BATCH`` inside the block, when it runs under
    the default policy on a platform that has one (Linux); otherwise, or if refused, unchanged."""
    setter = getattr(os, "sched_setscheduler", None)
    batch = False
    if setter is not None:
        try:
            if os.sched_getscheduler(0) == os.SCHED_OTHER:
                setter(0, os.SCHED_BATCH, os.sched_param(0))  # pid 0: the calling thread
                batch = True
        except OSError:  # refused (e.g. a seccomp sandbox): run under the current policy
            pass
    try:
        yield
    finally:
        if batch:
            setter(0, os.SCHED_OTHER, os.sched_param(0))
