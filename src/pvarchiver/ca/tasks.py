"""Background tasks that stay referenced until they finish.

asyncio keeps only weak references to tasks, so a task nobody holds may be
garbage-collected half-way; every fire-and-forget task (a deferred search
reply, a forwarded put, a read of ``RTYP``) goes into a :class:`TaskSet`,
which also cancels whatever is left when its owner closes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from typing import Any

__all__ = ["TaskSet"]


class TaskSet:
    """Tasks started with :meth:`spawn`, each dropped from the set when it is done."""

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a task of the running loop, kept until it is done."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def cancel(self) -> None:
        """Cancel every task still running."""
        for task in list(self._tasks):
            task.cancel()

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter(list(self._tasks))

    def __len__(self) -> int:
        return len(self._tasks)
