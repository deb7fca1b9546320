"""The container scenario rehearsed with a network namespace (environment.md §4).

IOC and the gateway's client side live in the host namespace.  The client
(EPICS' caget/camonitor) runs in a fresh namespace that has only a loopback
interface; the one way out is a forwarded TCP port (socat in the namespace ->
UNIX socket -> socat on the host -> the gateway's port).  The client finds
PVs with ``EPICS_CA_NAME_SERVERS`` (search over TCP), so no UDP crosses: the
gateway's search reply says "use the address you reached me at" (~0) and the
port it announces is the forwarded one.  Skipped, with the reason, where
namespaces cannot be created (not root, no ``ip``/``socat``, no CAP_SYS_ADMIN).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pvarchiver.ca.server import ServerConfig
from pvarchiver.gateway.core import Gateway, GatewaySettings

from .aio import run
from .ca_tools import client_env, tool
from .helpers.gateway import GATEWAY_DB as DB
from .helpers.net import free_port
from .helpers.wait import until
from .ioc import IOC


@pytest.fixture
def netns() -> Iterator[str]:
    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("network namespaces need root on Linux")
    for exe in ("ip", "socat"):
        if shutil.which(exe) is None:
            pytest.skip(f"{exe} not installed (apt: iproute2, socat)")
    name = f"pvgw-{uuid.uuid4().hex[:8]}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {made.stderr.strip()}")
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def _in_ns(ns: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def test_client_in_namespace_through_one_forwarded_port(netns: str, tmp_path: Path) -> None:
    caget = tool("caget")
    tool("camonitor")
    sock = tmp_path / "fwd.sock"
    with IOC(DB, tmp_path / "ioc") as ioc:
        port = free_port()
        procs: list[subprocess.Popen[bytes]] = []
        try:

            async def main() -> None:
                scfg = ServerConfig(interfaces=["127.0.0.1"], port=port, beacon_addrs=[])
                gw = Gateway(GatewaySettings(prefix="nsgw"), ioc.client_config(), scfg)
                await gw.start()
                try:
                    host_fwd = ["socat", f"UNIX-LISTEN:{sock},fork", f"TCP:127.0.0.1:{port}"]
                    procs.append(subprocess.Popen(host_fwd, stderr=subprocess.DEVNULL))
                    await until(sock.exists, 10)
                    ns_fwd = [
                        "socat",
                        f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr",
                        f"UNIX-CONNECT:{sock}",
                    ]
                    procs.append(subprocess.Popen(_in_ns(netns, ns_fwd), stderr=subprocess.DEVNULL))
                    env = client_env(port, EPICS_CA_NAME_SERVERS=f"127.0.0.1:{port}")
                    env["EPICS_CA_ADDR_LIST"] = ""
                    # the IOC itself is not reachable from inside the namespace
                    direct = client_env(ioc.port)
                    proc = await asyncio.create_subprocess_exec(
                        *_in_ns(netns, [caget, "-w", "2", "G:AI"]),
                        env=direct,
                        stdout=asyncio.subprocess.PIPE,
                        stderr=asyncio.subprocess.STDOUT,
                    )
                    out = (await proc.communicate())[0].decode()
                    assert "3.5" not in out and "not found" in out
                    # through the gateway's one forwarded port
                    for _ in range(50):  # the ns socat may take a moment to listen
                        proc = await asyncio.create_subprocess_exec(
                            *_in_ns(netns, [caget, "-w", "3", "G:AI", "nsgw:pvtotal"]),
                            env=env,
                            stdout=asyncio.subprocess.PIPE,
                            stderr=asyncio.subprocess.STDOUT,
                        )
                        out = (await proc.communicate())[0].decode()
                        if "3.5" in out:
                            break
                        await asyncio.sleep(0.1)
                    assert out.split()[:2] == ["G:AI", "3.5"], out
                    assert "nsgw:pvtotal" in out
                    proc_mon = await asyncio.create_subprocess_exec(
                        *_in_ns(netns, [tool("camonitor"), "G:CNT"]),
                        env=env,
                        stdout=asyncio.subprocess.PIPE,
                        stderr=asyncio.subprocess.STDOUT,
                        start_new_session=True,
                    )
                    lines: list[str] = []
                    assert proc_mon.stdout is not None
                    while len(lines) < 5:
                        line = await asyncio.wait_for(proc_mon.stdout.readline(), 20)
                        lines.append(line.decode().strip())
                    os.killpg(proc_mon.pid, 9)
                    await proc_mon.wait()
                    values = [float(x.split()[-1]) for x in lines]
                    assert values == sorted(values) and len(set(values)) == 5
                finally:
                    await gw.close()

            run(main())
        finally:
            for p in procs:
                p.kill()
                p.wait(10)
