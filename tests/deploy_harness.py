"""Isolation machinery for the deployment rehearsals: network namespaces, socat port
forwards, a private dockerd, and the host side (IOC + gateway) the isolated archiver reaches.

Everything here is real: ``ip netns`` and veth pairs, ``socat`` processes, Debian's
``dockerd`` with its own data root and socket. Each helper is a context manager that undoes
what it did (namespaces, veths, docker0, iptables rules, ``ip_forward``), because these
tests share a machine with other work. What cannot be set up yields a *reason* string and
the test skips with it; nothing is ever faked.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
VENV_BIN = Path(sys.executable).parent
CACHE = Path(os.environ.get("PVARCHIVER_CI_CACHE", "/var/cache/pvarchiver-ci"))
ARTIFACTS = ROOT / "test-artifacts" / "deploy"


def run(cmd: list[str], check: bool = True, **kw: object) -> subprocess.CompletedProcess[str]:
    """Run a short command, capturing text output; raise with its stderr when it fails."""
    res = subprocess.run(cmd, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} -> {res.returncode}: {res.stderr.strip()}")
    return res


def missing_tools(*tools: str) -> str | None:
    """Why the rehearsal cannot run here (not root, a tool missing), or None."""
    if not sys.platform.startswith("linux"):
        return "Linux only (network namespaces, dockerd)"
    if os.geteuid() != 0:
        return "needs root (network namespaces, dockerd)"
    gone = [t for t in tools if shutil.which(t) is None]
    if gone:
        return f"missing {', '.join(gone)} (apt-get install: see .ci/system-packages)"
    return None


class Proc:
    """A background process whose output goes to a log file; stopped or killed by its pid."""

    def __init__(
        self, cmd: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> None:
        self.cmd = cmd
        self.log_path = log
        self._log = open(log, "ab")  # closed in stop()
        self.proc = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int | None:
        """Signal the process, wait, SIGKILL if it does not go; returns the exit status."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL, 10)


def wait_port(host: str, port: int, timeout: float = 30, proc: Proc | None = None) -> None:
    """Until something accepts TCP connections on host:port (or ``proc`` died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.cmd[0]} exited:\n{proc.log()[-3000:]}")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout} s")


@contextlib.contextmanager
def forwarded(
    listen: str, port: int, target: str, target_port: int, logdir: Path, udp: bool = True
) -> Iterator[list[Proc]]:
    """Forward TCP (and UDP) ``listen:port`` to ``target:target_port`` with socat.

    This is what a container runtime's port publishing does (docker-proxy, Rancher Desktop's
    forwarder): the far side sees the forwarder's address, not the client's, which is the
    NAT situation CA must cope with. UDP is per datagram with a reply window (``-T``), so CA
    search replies come back to the searching socket.
    """
    procs = [
        Proc(
            [
                "socat",
                f"TCP4-LISTEN:{port},bind={listen},fork,reuseaddr",
                f"TCP4:{target}:{target_port}",
            ],
            logdir / f"socat-tcp-{listen}-{port}.log",
        )
    ]
    if udp:
        procs.append(
            Proc(
                [
                    "socat",
                    "-T",
                    "5",
                    f"UDP4-RECVFROM:{port},bind={listen},fork",
                    f"UDP4-SENDTO:{target}:{target_port}",
                ],
                logdir / f"socat-udp-{listen}-{port}.log",
            )
        )
    try:
        wait_port(listen, port, 10, procs[0])
        yield procs
    finally:
        for p in procs:
            p.stop()


class NetNS:
    """A network namespace joined to the host by one veth pair and nothing else.

    The host end gets ``10.238.N.1/30``, the namespace ``10.238.N.2/30``; the namespace has
    no default route, so from inside only that /30 (where the test's forwards listen) is
    reachable: the isolation a container on a Windows host has, without a runtime.
    """

    def __init__(self) -> None:
        n = os.getpid() % 250 + 1
        self.name = f"pvci{os.getpid()}"
        self.veth_host, self.veth_ns = f"pvh{os.getpid()}"[:15], f"pvn{os.getpid()}"[:15]
        self.host_addr, self.ns_addr = f"10.238.{n}.1", f"10.238.{n}.2"

    def __enter__(self) -> NetNS:
        steps = [
            ["ip", "netns", "add", self.name],
            ["ip", "link", "add", self.veth_host, "type", "veth", "peer", "name", self.veth_ns],
            ["ip", "link", "set", self.veth_ns, "netns", self.name],
            ["ip", "addr", "add", f"{self.host_addr}/30", "dev", self.veth_host],
            ["ip", "link", "set", self.veth_host, "up"],
            [*self.exec, "ip", "addr", "add", f"{self.ns_addr}/30", "dev", self.veth_ns],
            [*self.exec, "ip", "link", "set", self.veth_ns, "up"],
            [*self.exec, "ip", "link", "set", "lo", "up"],
        ]
        try:
            for cmd in steps:
                run(cmd)
        except RuntimeError:
            self.__exit__()
            raise
        return self

    @property
    def exec(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def __exit__(self, *exc: object) -> None:
        run(["ip", "netns", "del", self.name], check=False)
        run(["ip", "link", "del", self.veth_host], check=False)


def netns_reason() -> str | None:
    """Why network namespaces cannot be used here, or None (tries one for real)."""
    reason = missing_tools("ip", "socat")
    if reason:
        return reason
    try:
        with NetNS():
            pass
    except RuntimeError as e:
        return f"cannot create a network namespace: {e}"
    return None


class PrivateDockerd:
    """Debian's dockerd with its own socket and state, started and cleaned up by the test.

    The data root is kept in the CI cache (``$PVARCHIVER_CI_CACHE/docker``) so the imported
    base image and the build cache survive between runs; a lock file keeps two test runs
    from sharing it. On exit: containers removed, daemon stopped by pid, and what it did to
    the host undone: the docker0 bridge, its iptables chains and rules, the FORWARD policy
    and ``net.ipv4.ip_forward``.
    """

    def __init__(self) -> None:
        self.data_root = CACHE / "docker"
        self.run_dir = Path(tempfile.mkdtemp(prefix="pvdk", dir="/run"))
        self.sock = self.run_dir / "docker.sock"
        self.env = dict(os.environ, DOCKER_HOST=f"unix://{self.sock}", DOCKER_BUILDKIT="0")
        self.proc: Proc | None = None
        self._lock: object | None = None
        self._ip_forward = "0"
        self._forward_policy = "ACCEPT"
        self._had_docker0 = False

    @staticmethod
    def _policy(chain: str) -> str:
        for line in run(["iptables", "-S", chain], check=False).stdout.splitlines():
            if line.startswith(f"-P {chain} "):
                return line.split()[2]
        return "ACCEPT"

    def docker(
        self, *args: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        return run(["docker", *args], check=check, env=self.env, timeout=timeout)

    def __enter__(self) -> PrivateDockerd:
        self.data_root.mkdir(parents=True, exist_ok=True)
        import fcntl  # Linux only, like everything in this class

        lock = open(CACHE / "docker.lock", "w")  # closed in __exit__
        fcntl.flock(lock, fcntl.LOCK_EX)
        self._lock = lock
        # the host's state, read only once the lock is ours: another run's daemon is gone by
        # now, so this is what must be put back
        self._ip_forward = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
        self._forward_policy = self._policy("FORWARD")
        self._had_docker0 = Path("/sys/class/net/docker0").exists()
        self.proc = Proc(
            [
                "dockerd",
                "--data-root",
                str(self.data_root),
                "--host",
                f"unix://{self.sock}",
                "--exec-root",
                str(self.run_dir / "exec"),
                "--pidfile",
                str(self.run_dir / "dockerd.pid"),
            ],
            self.run_dir / "dockerd.log",
        )
        deadline = time.monotonic() + 60
        while self.docker("version", check=False).returncode != 0:
            if not self.proc.alive() or time.monotonic() > deadline:
                log = self.proc.log()[-3000:]
                self.__exit__()
                raise RuntimeError(f"dockerd did not start:\n{log}")
            time.sleep(0.3)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            ids = self.docker("ps", "-aq", check=False).stdout.split()
            if ids:
                self.docker("rm", "-f", *ids, check=False)
            self.proc.stop(signal.SIGTERM, 60)
            self.proc = None
        self._undo_network()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        if self._lock is not None:
            self._lock.close()  # type: ignore[attr-defined]
            self._lock = None

    def _undo_network(self) -> None:
        for table in ("filter", "nat"):
            rules = run(["iptables", "-t", table, "-S"], check=False).stdout.splitlines()
            for rule in rules:
                if rule.startswith("-A ") and any(k in rule for k in ("DOCKER", "docker0", "br-")):
                    run(["iptables", "-t", table, "-D", *rule.split()[1:]], check=False)
            for rule in rules:
                if rule.startswith("-N DOCKER"):
                    run(["iptables", "-t", table, "-F", rule.split()[1]], check=False)
                    run(["iptables", "-t", table, "-X", rule.split()[1]], check=False)
        run(["iptables", "-P", "FORWARD", self._forward_policy], check=False)
        if not self._had_docker0:
            run(["ip", "link", "del", "docker0"], check=False)
        Path("/proc/sys/net/ipv4/ip_forward").write_text(self._ip_forward + "\n")

    def bridge_address(self) -> str:
        """The host's address on docker0: where a bridge-networked container finds the host."""
        out = run(["ip", "-4", "-o", "addr", "show", "docker0"]).stdout.split()
        return out[out.index("inet") + 1].split("/")[0]


def base_image(dockerd: PrivateDockerd, logdir: Path) -> str:
    """The locally built Debian + Python base image (debootstrap once, cached as a tarball)."""
    tag = "pvarchiver-ci/bookworm-python3:1"
    if dockerd.docker("image", "inspect", tag, check=False).returncode == 0:
        return tag
    tarball = CACHE / "bookworm-python3.tar"
    if not tarball.exists():
        run([str(ROOT / "deploy" / "ci-base-image.sh"), str(tarball)], timeout=900)
    with open(tarball, "rb") as f:
        subprocess.run(
            ["docker", "import", "-", tag],
            stdin=f,
            env=dockerd.env,
            check=True,
            capture_output=True,
            timeout=300,
        )
    return tag


def build_context(dest: Path) -> Path:
    """The repository's files (tracked and new, as git sees them) plus wheels built here.

    Why wheels: this machine reaches PyPI only through a TLS-intercepting proxy whose
    certificate a fresh image does not trust, so the image installs offline from wheels
    made with the host's pip (``WHEELS=wheels``), exactly as docs/deployment.md describes.
    """
    names = run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT
    ).stdout.split("\0")
    for name in filter(None, names):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    # with the demo extra's wheels too, so EXTRAS=demo builds from the same folder
    run(
        [sys.executable, "-m", "pip", "wheel", "-q", ".[demo]", "-w", str(dest / "wheels")],
        cwd=dest,
        timeout=600,
    )
    return dest
