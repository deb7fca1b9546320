"""Start a real ``pvarchiver serve`` process on a free loopback port, for HTTP tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from .helpers.net import free_port
from .helpers.wait import wait_for

SRC = Path(__file__).resolve().parents[1] / "src"


class Server(str):
    """The server's base URL, which also knows the server's process id."""

    pid: int


@contextmanager
def running_server(
    storage: Path, extra_env: dict[str, str] | None = None, args: list[str] | None = None
) -> Iterator[Server]:
    port = free_port()
    # CA stays on loopback with its own ports, whatever the test machine has configured
    ca_defaults = {
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
        "EPICS_CA_ADDR_LIST": "127.0.0.1",
        "EPICS_CA_SERVER_PORT": str(free_port()),
        "EPICS_CA_REPEATER_PORT": str(free_port()),
    }
    env = dict(os.environ, PYTHONPATH=str(SRC), **{**ca_defaults, **(extra_env or {})})
    for v in (
        "ARCHAPPL_SHORT_TERM_FOLDER",
        "ARCHAPPL_MEDIUM_TERM_FOLDER",
        "ARCHAPPL_LONG_TERM_FOLDER",
    ):
        env.pop(v, None)
    log = open(storage.parent / f"server-{port}.log", "wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pvarchiver",
            "serve",
            "--storage",
            str(storage),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *(args or []),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def up_or_exited() -> bool:
            if proc.poll() is not None:
                return True
            try:
                return httpx.get(base + "/retrieval/ping", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        started = wait_for(up_or_exited, 30, 0.1)
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {Path(log.name).read_text()}")
        if not started:
            raise RuntimeError(f"server did not start: {Path(log.name).read_text()}")
        server = Server(base)
        server.pid = proc.pid
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
