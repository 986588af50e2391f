"""One builder at a time for a cached artefact (generated data, a built backbone).

Runs that start together on a fresh cache (a multirun sweep, two terminals, parallel test
workers) would otherwise build the same thing at once and write over each other. The first to
take the lock builds; the others wait for it and then find the artefact complete.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

try:
    import fcntl
except ImportError:  # not POSIX: no lock, as before (builds are still written atomically)
    fcntl = None


@contextmanager
def build_lock(target: str | Path):
    """Hold an exclusive lock on `<target>.lock` (beside `target`) for the block."""
    target = Path(target).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    lock_path = target.parent / f"{target.name}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("Waiting for another process building %s", target)
            start = time.monotonic()
            fcntl.flock(fd, fcntl.LOCK_EX)
            log.info("%s is free after %.0f s", target, time.monotonic() - start)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def build_once(target: str | Path, is_complete: Callable[[], bool], build: Callable[[], None]) -> bool:
    """Run `build` unless `is_complete()` says `target` is already there; under `build_lock`, and
    asked again once the lock is held, since another process may have built it while this one
    waited. True when this process built it."""
    if is_complete():
        return False
    with build_lock(target):
        if is_complete():
            return False
        build()
        return True
