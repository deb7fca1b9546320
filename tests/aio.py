"""asyncio helpers shared by the tests that drive real IOCs, servers and gateways (the
coroutine form of the one wait helper, ``until``, is in tests/helpers/wait.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["run"]

T = TypeVar("T")


def run(coro: Awaitable[T], timeout: float = 300.0) -> T:
    """Run one test coroutine with an overall safety timeout (a hung IOC fails, not hangs)."""

    async def main() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(main())
