"""Running a process's main coroutine on the fastest event loop installed."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop when it is installed (a dependency everywhere but Windows).

    The worker and the API hand every database call, Temporal completion and socket wake-up
    between threads and the loop; uvloop does that in C, a measured share of their CPU per
    event (bench/RESULTS.md). Without it, the standard loop runs the same code.
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
