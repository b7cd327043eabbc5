"""Ctrl-C during a run: still a KeyboardInterrupt, and remembered, because code on the way up may wrap it
(pydantic turns one raised while it serializes into a PydanticSerializationError).

A module of its own: the flow function is pickled by value for Ray, with the globals it uses, and a
threading.Event cannot be pickled; a module and its functions are pickled by reference.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

_INTERRUPTED = threading.Event()


def interrupted() -> bool:
    return _INTERRUPTED.is_set()


@contextlib.contextmanager
def noting_interrupts() -> Iterator[None]:
    def on_sigint(_signum, _frame):
        _INTERRUPTED.set()
        raise KeyboardInterrupt
    _INTERRUPTED.clear()
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
