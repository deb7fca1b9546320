"""Test harness: a real EPICS IOC (epicscorelibs' RSRV, no Python in the data path).

Why a real IOC: the CA client must match what production servers send
(padding, extended headers, beacons), which only the C server proves.  The IOC
runs as a subprocess bound to 127.0.0.1 on a free port, beacons go to
127.0.0.1 on a free repeater port, and it can be killed and restarted on the
same port to exercise reconnection.  No PVA server is loaded (no extra ports).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pvarchiver.ca import CAConfig

from .helpers.net import free_port

__all__ = ["IOC", "counter_db", "fast_dbd_dir", "free_port", "pause", "resume", "running_ioc"]

epicscorelibs = pytest.importorskip("epicscorelibs.path")

_LAUNCHER = r"""
import sys
import epicscorelibs.ioc as m
if sys.argv[2]:
    m.DEFAULT_DBD_PATH = sys.argv[2]
if len(sys.argv) > 3 and sys.argv[3]:
    m.dbCore.asSetFilename(sys.argv[3].encode())
m.start_ioc(dbs=[(sys.argv[1], "")])
sys.stderr.flush()
sys.stdin.read()
import os
os._exit(0)
"""


def counter_db(prefix: str, n: int, scan: str, fields: str = "") -> str:
    """``n`` calc records ``<prefix>00000``.. counting up on ``scan``: one scan processes
    them all at once, so their updates leave the IOC as one burst per period."""
    return "".join(
        f'record(calc, "{prefix}{i:05d}") {{ field(SCAN, "{scan}") field(CALC, "A+1") '
        f'field(INPA, "{prefix}{i:05d}") {fields}}}\n'
        for i in range(n)
    )


def fast_dbd_dir(dest: Path) -> Path:
    """Copy of the base dbd files with an extra '.01 second' scan choice (100 Hz records)."""
    src = Path(epicscorelibs.base_path) / "dbd"
    dest.mkdir(parents=True, exist_ok=True)
    for f in src.glob("*.dbd"):
        shutil.copy(f, dest / f.name)
    menu = dest / "menuScan.dbd"
    text = menu.read_text()
    line = '\tchoice(menuScan_1_second,".1 second")'
    menu.write_text(text.replace(line, line + '\n\tchoice(menuScan_01_second,".01 second")'))
    return dest


def sigkill(proc: subprocess.Popen[str]) -> None:
    """Kill an IOC process at once, as a crash would, and reap it (CA or PVA)."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    with contextlib.suppress(OSError):
        if proc.stdin:
            proc.stdin.close()


class IOC:
    """A softIoc subprocess; use as a context manager or call start()/stop().

    ``beacons=False`` leaves EPICS_CAS_BEACON_ADDR_LIST empty so the IOC sends
    no beacons (to test the search backoff alone).
    """

    def __init__(
        self,
        db: str,
        workdir: Path,
        *,
        port: int | None = None,
        repeater_port: int | None = None,
        beacons: bool = True,
        fast_scan: bool = False,
        max_array_bytes: int = 16384,
        acf: str | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.workdir / "test.db"
        self.db_path.write_text(db)
        self.port = port or free_port()
        self.repeater_port = repeater_port or free_port()
        self.beacons = beacons
        self.max_array_bytes = max_array_bytes
        self.dbd = str(fast_dbd_dir(self.workdir / "dbd")) if fast_scan else ""
        # an access security file (asSetFilename before iocInit), for access-rights tests
        self.acf_path = ""
        if acf is not None:
            (self.workdir / "test.acf").write_text(acf)
            self.acf_path = str(self.workdir / "test.acf")
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}
        env.update(
            EPICS_CA_SERVER_PORT=str(self.port),
            EPICS_CA_REPEATER_PORT=str(self.repeater_port),
            EPICS_CAS_INTF_ADDR_LIST="127.0.0.1",
            EPICS_CAS_AUTO_BEACON_ADDR_LIST="NO",
            EPICS_CAS_BEACON_ADDR_LIST="127.0.0.1" if self.beacons else "",
            EPICS_CA_AUTO_ADDR_LIST="NO",
            EPICS_CA_ADDR_LIST="127.0.0.1",
            EPICS_CA_MAX_ARRAY_BYTES=str(self.max_array_bytes),
        )
        return env

    def client_config(self, **overrides: object) -> CAConfig:
        """A CAConfig aimed at this IOC only (explicit address list, no auto list)."""
        env = {
            "EPICS_CA_ADDR_LIST": f"127.0.0.1:{self.port}",
            "EPICS_CA_AUTO_ADDR_LIST": "NO",
            "EPICS_CA_SERVER_PORT": str(self.port),
            "EPICS_CA_REPEATER_PORT": str(self.repeater_port),
            "EPICS_CA_MAX_ARRAY_BYTES": str(self.max_array_bytes),
        }
        cfg = CAConfig.from_env(env)
        for key, value in overrides.items():
            setattr(cfg, key, value)
        return cfg

    def start(self, timeout: float = 30.0) -> None:
        """Start and wait for iocInit to finish ('IOC Running' on stderr)."""
        self.output = []
        ready = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER, str(self.db_path), self.dbd, self.acf_path],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(),
            cwd=self.workdir,
        )

        def drain(stream: object = self.proc.stderr) -> None:
            for line in stream:  # type: ignore[attr-defined]
                self.output.append(line)
                if "IOC Running" in line:
                    ready.set()
            ready.set()

        threading.Thread(target=drain, daemon=True).start()
        if not ready.wait(timeout) or self.proc.poll() is not None:
            out = "".join(self.output)
            self.kill()
            raise RuntimeError(f"IOC did not start:\n{out}")

    def stop(self) -> None:
        """Graceful stop (EOF on stdin), falling back to SIGKILL."""
        proc = self.proc
        if proc is None:
            return
        with contextlib.suppress(OSError):
            if proc.stdin:
                proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL, like a crashed IOC (the kernel resets its TCP connections)."""
        if self.proc is not None:
            sigkill(self.proc)
        self.proc = None

    def __enter__(self) -> IOC:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


@contextlib.contextmanager
def running_ioc(db: str, workdir: Path, **kwargs: object) -> Iterator[IOC]:
    """``with running_ioc(db, tmp_path) as ioc:`` - started, always killed."""
    ioc = IOC(db, workdir, **kwargs)  # type: ignore[arg-type]
    ioc.start()
    try:
        yield ioc
    finally:
        ioc.kill()


def pause(ioc: IOC) -> None:
    """SIGSTOP the IOC: its sockets stay open but it goes silent (tests circuit timeouts)."""
    if ioc.proc is not None:
        ioc.proc.send_signal(signal.SIGSTOP)


def resume(ioc: IOC) -> None:
    """SIGCONT after :func:`pause`."""
    if ioc.proc is not None:
        ioc.proc.send_signal(signal.SIGCONT)
