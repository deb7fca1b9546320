"""Real PV Access peers for the PVA tests: a pvxs QSRV IOC, a p4p server, and a raw capture.

Why real peers: our codec must read what production servers send, so the bytes come from
pvxs itself (QSRV in ``python -m pvxslibs.ioc``, p4p's server), captured at run time on
127.0.0.1 with free ports; nothing captured is committed. p4p's client is the independent
decoder the tests compare ours with.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pvarchiver.pva.connection import ClientConnection, GetResult, MonitorUpdate, Validated
from pvarchiver.pva.env import PVAConfig
from pvarchiver.pva.request import pv_request

from .helpers.net import free_port
from .ioc import sigkill

pytest.importorskip("p4p")
pytest.importorskip("pvxslibs")


def server_env(sport: int, bport: int) -> dict[str, str]:
    """pvxs server settings: loopback only, our ports, beacons to loopback."""
    return {
        "EPICS_PVAS_INTF_ADDR_LIST": "127.0.0.1",
        "EPICS_PVAS_SERVER_PORT": str(sport),
        "EPICS_PVAS_BROADCAST_PORT": str(bport),
        "EPICS_PVAS_AUTO_BEACON_ADDR_LIST": "NO",
        "EPICS_PVAS_BEACON_ADDR_LIST": "127.0.0.1",
    }


def client_config(*bports: int, **overrides: Any) -> PVAConfig:
    """Our client aimed at these broadcast ports on 127.0.0.1 only."""
    env = {
        "EPICS_PVA_ADDR_LIST": " ".join(f"127.0.0.1:{p}" for p in bports),
        "EPICS_PVA_AUTO_ADDR_LIST": "NO",
    }
    cfg = PVAConfig.from_env(env)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


def p4p_client_conf(bport: int) -> dict[str, str]:
    return {"EPICS_PVA_ADDR_LIST": f"127.0.0.1:{bport}", "EPICS_PVA_AUTO_ADDR_LIST": "NO"}


@contextlib.contextmanager
def p4p_server(pvs: dict[str, Any]) -> Iterator[tuple[int, int]]:
    """A p4p server publishing ``pvs`` (name -> SharedPV); yields (server port, bcast port)."""
    from p4p.server import Server

    sport, bport = free_port(), free_port()
    srv = Server(providers=[pvs], conf=server_env(sport, bport), useenv=False)
    try:
        yield sport, bport
    finally:
        srv.stop()


class QsrvIOC:
    """``python -m pvxslibs.ioc`` with CA off; restartable on the same ports."""

    def __init__(self, db: str, workdir: Path, fast_scan: bool = False) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "pva.db").write_text(db)
        self.sport, self.bport = free_port(), free_port()
        self.dbd = ""
        if fast_scan:
            from .ioc import fast_dbd_dir

            self.dbd = str(fast_dbd_dir(self.workdir / "dbd"))
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    def start(self, timeout: float = 30.0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}
        env.update(server_env(self.sport, self.bport), EPICS_IOC_IGNORE_SERVERS="rsrv")
        # what `python -m pvxslibs.ioc` does, with our own dbd folder when asked
        launcher = (
            "import os, sys, pvxslibs.path, epicscorelibs.ioc as e\n"
            "os.environ.setdefault('PVXS_QSRV_ENABLE', 'YES')\n"
            "if sys.argv[2]: e.DEFAULT_DBD_PATH = sys.argv[2]\n"
            "sys.argv = ['ioc', '-d', sys.argv[1]]\n"
            "e.main(extra_dbd_load=(('pvxsIoc.dbd', pvxslibs.path.dbd_path),),\n"
            "       extra_dso_load=('pvxslibs.lib.pvxsIoc',))\n"
        )
        cmd = [sys.executable, "-c", launcher, "pva.db", self.dbd]
        self.output = []
        ready = threading.Event()
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=self.workdir,
        )

        def drain(stream: Any = self.proc.stdout) -> None:
            for line in stream:
                self.output.append(line)
                if "IOC Running" in line:
                    ready.set()
            ready.set()

        threading.Thread(target=drain, daemon=True).start()
        if not ready.wait(timeout) or self.proc.poll() is not None:
            self.kill()
            raise RuntimeError("QSRV IOC did not start:\n" + "".join(self.output))

    def kill(self) -> None:
        if self.proc is not None:
            sigkill(self.proc)
        self.proc = None


@contextlib.contextmanager
def qsrv_ioc(db: str, workdir: Path, **kw: Any) -> Iterator[QsrvIOC]:
    ioc = QsrvIOC(db, workdir, **kw)
    ioc.start()
    try:
        yield ioc
    finally:
        ioc.kill()


def capture(
    sport: int, name: str, updates: int = 0, post: Any = None, timeout: float = 10.0
) -> tuple[list[bytes], list[Any]]:
    """Talk to a real server on a raw socket with our protocol machine and record every
    chunk of bytes it sent: validation, channel, a GET and ``updates`` monitor updates
    (``post()`` is called once the monitor runs, to make the server send them). Returns
    (received chunks, events)."""
    proto = ClientConnection("tester", "localhost")
    chunks: list[bytes] = []
    events: list[Any] = []
    deadline = time.monotonic() + timeout
    posted = False
    with socket.create_connection(("127.0.0.1", sport), timeout=timeout) as s:
        while time.monotonic() < deadline:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
            for ev in proto.receive(data):
                events.append(ev)
                if isinstance(ev, Validated):
                    proto.create_channel(1, name)
                elif type(ev).__name__ == "ChannelCreated":
                    proto.get(ev.sid, 1, pv_request())
                elif isinstance(ev, GetResult):
                    if updates:
                        proto.monitor(ev_sid(events), 2, pv_request())
            out = proto.outgoing()
            if out:
                s.sendall(out)
            monitors = [e for e in events if isinstance(e, MonitorUpdate)]
            if updates and monitors and not posted and post is not None:
                posted = True
                post()
            if any(isinstance(e, GetResult) for e in events) and len(monitors) >= updates:
                break
    return chunks, events


def ev_sid(events: list[Any]) -> int:
    return next(e.sid for e in events if type(e).__name__ == "ChannelCreated")
