"""The container scenario without a container runtime: the same isolation a container on a
Windows host has (no host networking, only forwarded ports), made with a network namespace.

``pvarchiver serve`` is started by the image's own entrypoint script (``deploy/entrypoint.sh``)
with the image's own environment (read from the Containerfile), inside a namespace whose only
link is a veth pair. It reaches the host's gateway only through a socat forward on the host
end of that link, and the test reaches its HTTP port only through another forward. Then it is
killed with SIGKILL and started again: every PV must come back with no new request and
nothing that was on disk may be missing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from .deploy_harness import ARTIFACTS, ROOT, SRC, VENV_BIN, NetNS, Proc, forwarded, netns_reason
from .deploy_scenario import (
    ArchiverAPI,
    HostSide,
    Notes,
    check_archiving,
    check_restart,
    containerfile_env,
)
from .helpers.net import free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def netns_ok() -> None:
    reason = netns_reason()
    if reason:
        pytest.skip(reason)


posix_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the container entrypoint is a Linux sh script"
)


@posix_only
def test_entrypoint_execs_the_archiver(tmp_path: Path) -> None:
    """PID 1 of a container is whatever the entrypoint execs: it must be the archiver itself,
    so SIGTERM reaches it; here the process started is the one that ends up serving."""
    storage = tmp_path / "containerdata"
    env = _env(storage, "127.0.0.1:9")
    port = free_port()
    env["PVARCHIVER_HOST"], env["PVARCHIVER_PORT"] = "127.0.0.1", str(port)
    proc = Proc(["sh", str(ROOT / "deploy" / "entrypoint.sh")], tmp_path / "ep.log", env=env)
    try:
        ArchiverAPI(f"http://127.0.0.1:{port}").wait_up(60, proc.alive)
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
        assert any(b"pvarchiver" in part for part in cmdline), cmdline
        assert not any(part.endswith(b"entrypoint.sh") for part in cmdline), cmdline
    finally:
        # uvicorn re-raises the signal after its orderly shutdown: "killed by SIGTERM" is the
        # clean exit (systemd and container runtimes count it as such)
        status = proc.stop(signal.SIGTERM)
    assert status in (0, -signal.SIGTERM), proc.log()[-2000:]
    assert "Application shutdown complete" in proc.log(), proc.log()[-2000:]
    assert all((storage / d).is_dir() for d in ("sts", "mts", "lts"))


@posix_only
def test_entrypoint_refuses_unwritable_storage(tmp_path: Path) -> None:
    """A /storage the container user cannot write is a clear message and exit 78, not a
    traceback and a restart loop. (A path below a regular file: unwritable even for root.)"""
    (tmp_path / "file").write_text("")
    env = _env(tmp_path / "file" / "storage", "127.0.0.1:9")
    res = subprocess.run(
        ["sh", str(ROOT / "deploy" / "entrypoint.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 78, res
    assert "cannot write to" in res.stderr and "chown" in res.stderr, res.stderr


def _env(storage: Path, ca_addr: str) -> dict[str, str]:
    """The image's environment, with this checkout's ``pvarchiver`` first on PATH.

    The command is a tiny ``exec python -m pvarchiver`` script (what pip's console script
    does in the image), so the pid stays that of the archiver.
    """
    shim = Path(tempfile.gettempdir()) / f"pvarchiver-shim-{os.getpid()}"
    shim.mkdir(parents=True, exist_ok=True)
    (shim / "pvarchiver").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m pvarchiver "$@"\n')
    (shim / "pvarchiver").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EPICS_", "ARCHAPPL_"))}
    env.update(containerfile_env(storage))
    env.update(
        PATH=f"{shim}:{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}",
        PYTHONPATH=str(SRC),
        EPICS_CA_ADDR_LIST=ca_addr,
    )
    return env


def test_netns_scenario(netns_ok: None, tmp_path: Path) -> None:
    notes = Notes()
    artifacts = ARTIFACTS / "netns"
    storage = tmp_path / "containerdata"
    with NetNS() as ns, HostSide(tmp_path / "host", ns.host_addr, notes) as host:
        env = _env(storage, host.ca_addr)
        cmd = [*ns.exec, "sh", str(ROOT / "deploy" / "entrypoint.sh"), "serve"]
        http_port = free_port()
        # the archiver's published HTTP port, like `-p 127.0.0.1:PORT:17665`
        with forwarded("127.0.0.1", http_port, ns.ns_addr, 17665, tmp_path, udp=False):
            api = ArchiverAPI(f"http://127.0.0.1:{http_port}")
            procs = [Proc(cmd, tmp_path / "archiver.log", env=env)]
            try:
                notes.numbers["ready after first start (s)"] = round(
                    api.wait_up(60, procs[-1].alive), 2
                )
                host.assert_ioc_hidden(ns.exec)
                check_archiving(api, storage, notes, artifacts)

                def kill_and_restart() -> None:
                    procs[-1].kill()
                    procs.append(Proc(cmd, tmp_path / "archiver.log", env=env))

                check_restart(api, storage, notes, kill_and_restart, hard=True)
            except BaseException:
                print((tmp_path / "archiver.log").read_text()[-6000:])
                raise
            finally:
                for p in procs:
                    p.stop()
    notes.finish()
