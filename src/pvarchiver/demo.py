"""``pvarchiver serve --demo``: a small IOC started beside the archiver, its PVs archived.

Why: a new user should see archived data within a minute of the first command, with no IOC
of their own and no EPICS knowledge. The IOC is the C softIoc from the ``epicscorelibs``
wheel (``pip install "pvarchiver[demo]"``), a child process bound to 127.0.0.1 on a free port
so it can never clash with a site's real IOCs on 5064. Its PVs are handed to the archiver as
ordinary archive requests (the same path as ``--archive``), so the demo exercises the real
engine and storage, not a shortcut.

The child reads its stdin and exits at end of file: when the archiver goes away for any
reason, even ``kill -9``, the pipe closes and the IOC follows (no orphans, on Windows too).

The pure parts (:func:`demo_db`, :func:`demo_pv_names`, :func:`with_demo_address`) are testable
without starting anything. ``PVARCHIVER_DEMO_COUNT=N`` adds N ``demo:bulk:NNNN`` counters
(1 Hz), which ``benchmarks/bench_startup.py`` uses to time archiving 1,000 PVs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

PREFIX = "demo:"

# name -> record text; values that move, an alarm that trips, a waveform, a string, an enum
_RECORDS: dict[str, str] = {
    "counter": 'record(calc, "demo:counter") {\n'
    '  field(DESC, "counts up at 10 Hz")\n'
    '  field(SCAN, ".1 second") field(CALC, "A+1") field(INPA, "demo:counter")\n}\n',
    "sine": 'record(calc, "demo:sine") {\n'
    '  field(DESC, "sine wave, period 60 s")\n'
    '  field(SCAN, ".1 second") field(CALC, "10*SIN(A*PI/300)") field(INPA, "demo:counter")\n'
    '  field(EGU, "V") field(PREC, "3") field(HOPR, "10") field(LOPR, "-10")\n}\n',
    "ramp": 'record(calc, "demo:ramp") {\n'
    '  field(DESC, "saw tooth 0..99, 1 Hz")\n'
    '  field(SCAN, "1 second") field(CALC, "(A+1)%100") field(INPA, "demo:ramp")\n'
    '  field(EGU, "mm") field(HOPR, "100")\n}\n',
    "noise": 'record(calc, "demo:noise") {\n'
    '  field(DESC, "random 0..1, 2 Hz")\n'
    '  field(SCAN, ".5 second") field(CALC, "RNDM") field(PREC, "4")\n}\n',
    "alarm": 'record(calc, "demo:alarm") {\n'
    '  field(DESC, "ramp with HIGH/HIHI alarms")\n'
    '  field(SCAN, "1 second") field(CALC, "A") field(INPA, "demo:ramp")\n'
    '  field(HIGH, "70") field(HIHI, "90") field(HSV, "MINOR") field(HHSV, "MAJOR")\n}\n',
    "wave": 'record(compress, "demo:wave") {\n'
    '  field(DESC, "last 100 values of demo:sine")\n'
    '  field(ALG, "Circular Buffer") field(NSAM, "100") field(INP, "demo:sine CP")\n}\n',
    "text": 'record(stringin, "demo:text") {\n'
    '  field(DESC, "a string PV")\n'
    '  field(PINI, "YES") field(VAL, "hello from the pvarchiver demo")\n}\n',
    "mode": 'record(mbbi, "demo:mode") {\n'
    '  field(DESC, "an enum that changes every 5 s")\n'
    '  field(SCAN, "1 second") field(INP, "demo:modecalc")\n'
    '  field(ZRST, "Idle") field(ONST, "Ramping") field(TWST, "Holding")\n}\n'
    'record(calc, "demo:modecalc") {\n'
    '  field(SCAN, "1 second") field(CALC, "FLOOR(A/5)%3") field(INPA, "demo:ramp")\n}\n',
}


class DemoUnavailable(RuntimeError):
    """The demo cannot start (its IOC package is missing or the IOC failed); says why."""


def demo_pv_names(count: int = 0) -> list[str]:
    """The PVs the demo archives: the fixed set plus ``count`` bulk counters."""
    return [PREFIX + n for n in _RECORDS] + [f"{PREFIX}bulk:{i:04d}" for i in range(count)]


def demo_db(count: int = 0) -> str:
    """The IOC database for the demo (the bulk counters scan at 1 Hz: 1,000 PVs = 1 kHz)."""
    bulk = "".join(
        f'record(calc, "{PREFIX}bulk:{i:04d}") {{ field(SCAN, "1 second") '
        f'field(CALC, "A+1") field(INPA, "{PREFIX}bulk:{i:04d}") }}\n'
        for i in range(count)
    )
    return "".join(_RECORDS.values()) + bulk


def with_demo_address(env: Mapping[str, str], port: int) -> dict[str, str]:
    """The CA variables the archiver needs to find the demo IOC, keeping the site's own list.

    Only ``EPICS_CA_ADDR_LIST`` changes: ``127.0.0.1:port`` is appended, so PVs from real IOCs
    the site already configured stay reachable in the same process.
    """
    current = env.get("EPICS_CA_ADDR_LIST", "").split()
    entry = f"127.0.0.1:{port}"
    return {"EPICS_CA_ADDR_LIST": " ".join([*current, entry] if entry not in current else current)}


def demo_count(env: Mapping[str, str]) -> int:
    """``PVARCHIVER_DEMO_COUNT`` as a non-negative integer; a clear error otherwise."""
    text = env.get("PVARCHIVER_DEMO_COUNT", "0").strip() or "0"
    try:
        count = int(text)
    except ValueError:
        msg = f"PVARCHIVER_DEMO_COUNT must be a whole number, not {text!r}"
        raise DemoUnavailable(msg) from None
    if not 0 <= count <= 100_000:
        raise DemoUnavailable(f"PVARCHIVER_DEMO_COUNT must be between 0 and 100000, not {count}")
    return count


def _free_port() -> int:
    """A port free for TCP on 127.0.0.1 and UDP on all addresses (a CA server needs both)."""
    for _ in range(50):
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("", port))
                except OSError:
                    continue
            return port
    raise DemoUnavailable("no free port for the demo IOC")


def _detached() -> dict[str, object]:
    """Popen arguments putting the child in a process group of its own, on any platform."""
    if sys.platform == "win32":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


# The child: load the database, start the IOC, then block on stdin. End of file (the parent
# closed the pipe or died) ends the process without running EPICS' atexit teardown, which
# can hang while CA clients are still connected.
_LAUNCH = """
import os, sys
import epicscorelibs.ioc as ioc
ioc.start_ioc(dbs=[(sys.argv[1], "")])
sys.stderr.flush()
sys.stdin.read()
os._exit(0)
"""


class DemoIOC:
    """The running demo IOC; :meth:`stop` (or leaving the ``with`` block) ends it."""

    def __init__(self, count: int = 0) -> None:
        self.count = count
        self.pv_names = demo_pv_names(count)
        self.port = 0
        self.workdir: Path | None = None
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    def start(self, timeout: float = 60.0) -> None:
        if importlib.util.find_spec("epicscorelibs") is None:
            raise DemoUnavailable(
                'the demo needs the EPICS IOC libraries: pip install "pvarchiver[demo]" '
                "(or: pip install epicscorelibs)"
            )
        self.port = _free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="pvarchiver-demo-"))
        db = self.workdir / "demo.db"
        db.write_text(demo_db(self.count))
        env = {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}
        env.update(
            EPICS_CA_SERVER_PORT=str(self.port),
            EPICS_CAS_INTF_ADDR_LIST="127.0.0.1",
            EPICS_CAS_AUTO_BEACON_ADDR_LIST="NO",
            EPICS_CAS_BEACON_ADDR_LIST="127.0.0.1",
            EPICS_CA_REPEATER_PORT=str(_free_port()),
            EPICS_CA_AUTO_ADDR_LIST="NO",
            EPICS_CA_ADDR_LIST="127.0.0.1",
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _LAUNCH, str(db)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=self.workdir,
            # its own process group: Ctrl+C in the terminal reaches only the archiver, which
            # then ends the IOC after its final flush (no "disconnected" samples at the end)
            **_detached(),
        )
        ready = threading.Event()

        def drain(stream: object = self.proc.stderr) -> None:
            for line in stream:  # type: ignore[attr-defined]
                if len(self.output) < 200:
                    self.output.append(line)
                if "IOC Running" in line:
                    ready.set()
            ready.set()

        threading.Thread(target=drain, name="demo-ioc-log", daemon=True).start()
        if not ready.wait(timeout) or self.proc.poll() is not None:
            log = "".join(self.output[-20:])
            self.stop()
            raise DemoUnavailable(f"the demo IOC did not start:\n{log}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            with contextlib.suppress(OSError):
                if proc.stdin:
                    proc.stdin.close()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> DemoIOC:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_demo(port: int = 17665, count: int = 0) -> DemoIOC:
    """Start the demo IOC with ``count`` extra counters and tell the user where to look.

    The caller points the archiver's CA client at it (:func:`with_demo_address` on the CA
    settings) and archives :attr:`DemoIOC.pv_names`.
    """
    demo = DemoIOC(count)
    demo.start()
    first = demo.pv_names[1]
    print(
        f"Demo IOC running on 127.0.0.1:{demo.port} with {len(demo.pv_names)} PVs "
        f"({', '.join(demo.pv_names[:8])}{', ...' if len(demo.pv_names) > 8 else ''}); "
        "archiving them now.\n"
        f"  Data:  http://localhost:{port}/retrieval/data/getData.json?pv={first}\n"
        f"  UI:    http://localhost:{port}/mgmt/ui/index.html\n"
        f"  caget: EPICS_CA_ADDR_LIST=127.0.0.1:{demo.port} EPICS_CA_AUTO_ADDR_LIST=NO "
        f"caget {first}",
        flush=True,
    )
    return demo
