"""asyncio helpers shared by the tests that drive real IOCs, servers and gateways."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


def run(coro: Awaitable[T], timeout: float = 300.0) -> T:
    """Run one test coroutine with an overall safety timeout (a hung IOC fails, not hangs)."""

    async def main() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(main())


async def until(pred: Callable[[], Any], timeout: float = 60.0) -> None:
    """Wait for a condition; fail with a clear message on timeout."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout:.0f} s")
        await asyncio.sleep(0.02)
