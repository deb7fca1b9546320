"""The one way tests wait: poll a condition until it holds or a timeout passes.

``wait_for`` is the synchronous form (returns whether the condition held, for ``assert
wait_for(...), why``); ``until`` is the same loop for coroutines, and fails by itself."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.02) -> bool:
    """Poll ``predicate`` every ``interval`` s until true or ``timeout``; returns the last
    result (checked once more at the deadline)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


async def until(pred: Callable[[], Any], timeout: float = 60.0, interval: float = 0.02) -> None:
    """Wait (in a coroutine) for a condition; fail with a clear message on timeout."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout:.0f} s")
        await asyncio.sleep(interval)
