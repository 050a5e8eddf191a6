"""Interrupts of a sweep: Ctrl-C and ``SIGTERM`` stop it, and nothing half-done is kept.

Three guards, used by the runner (:mod:`sbi_allinone.benchmarks.runner`):

* :func:`interrupt_after_scoring`: sklearn's MLP catches ``KeyboardInterrupt`` and
  returns an under-trained classifier, whose C2ST would then be written as if the
  cell had finished. Inside this guard a Ctrl-C is remembered, and raised again once
  the classifier returns, so the cell records nothing.
* :func:`sigterm_as_interrupt`: ``SIGTERM`` (``kill``, a batch system's time limit)
  raises ``KeyboardInterrupt`` like Ctrl-C, so both take the same way out.
* :func:`terminate_workers`: stop a process pool's workers at once, instead of
  waiting for their running cells.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

__all__ = ["interrupt_after_scoring", "sigterm_as_interrupt", "terminate_workers"]


def _in_main_thread() -> bool:
    """Signal handlers can only be set from the main thread (not in Dask workers)."""
    return threading.current_thread() is threading.main_thread()


@contextmanager
def interrupt_after_scoring() -> Iterator[None]:
    """Raise ``KeyboardInterrupt`` after the block if Ctrl-C (or ``SIGTERM``, within
    :func:`sigterm_as_interrupt`) came during it, even if code inside (sklearn's
    MLP) caught the ``KeyboardInterrupt`` it raised.

    Yields:
        Nothing. Only signals handled in Python are watched (those that raise);
        outside the main thread, a no-op.
    """
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    watched = [s for s, handler in previous.items() if callable(handler)]
    if not _in_main_thread():
        watched = []
    interrupted: list[int] = []

    def remember_and_raise(signum: int, frame: object) -> None:
        interrupted.append(signum)
        raise KeyboardInterrupt

    for signum in watched:
        signal.signal(signum, remember_and_raise)
    try:
        yield
    finally:
        for signum in watched:
            signal.signal(signum, previous[signum])
    if interrupted:
        raise KeyboardInterrupt


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, ``SIGTERM`` raises ``KeyboardInterrupt`` (as Ctrl-C does).

    Yields:
        Nothing; outside the main thread, or with SIGTERM ignored, a no-op.
    """
    previous = signal.getsignal(signal.SIGTERM)
    if not _in_main_thread() or previous in (signal.SIG_IGN, None):
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def terminate_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel a pool's pending work and terminate its worker processes now.

    Args:
        pool: The pool; it can no longer be used afterwards.
    """
    # The standard library has no public way to stop running workers before
    # Python 3.14 (``terminate_workers``); ``_processes`` is dropped by shutdown.
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=5)
