"""The deployment files say what the docs promise, and the pieces they run work.

Containerfile, compose.yaml, the systemd units, the WinSW service file, the gateway's
pvlist/ACF and start script are read as their consumers read them (YAML, INI, XML, the
gateway's own parsers), so a broken edit fails here rather than on a user's machine.
The healthcheck script runs against a real server; ``serve --demo`` starts its real IOC.
"""

from __future__ import annotations

import configparser
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest

from pvarchiver import demo
from pvarchiver.cli.main import main

from .helpers.net import free_port
from .helpers.wait import wait_for
from .http_server import running_server

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def test_containerfile_contract() -> None:
    text = (ROOT / "Containerfile").read_text()
    assert re.search(r"^ARG BASE=python:3\.\d+-slim", text, re.M)
    # the venv is built on BASE; the image is only the root file system assembled from it
    stages = re.findall(r"^FROM (.*)$", text, re.M)
    assert stages == ["${BASE} AS build", "scratch"], stages
    assert "COPY --from=build /rootfs /" in text
    user = re.search(r"^USER (\S+)", text, re.M)
    assert user and not user.group(1).startswith(("0", "root"))
    assert re.search(r'^VOLUME \["/storage"\]', text, re.M)
    expose = re.search(r"^EXPOSE (.*)$", text, re.M)
    assert expose and set(expose.group(1).split()) == {
        "17665/tcp",
        "5064/tcp",
        "5064/udp",
        "5065/tcp",
        "5065/udp",
    }
    assert re.search(r'^\s+CMD \["python3", "/usr/local/bin/pvarchiver-healthcheck"\]', text, re.M)
    assert "curl" not in re.sub(r"#.*", "", text)
    # exec form: no /bin/sh -c in between, so the signal reaches the entrypoint's exec target
    assert re.search(r'^ENTRYPOINT \["/usr/local/bin/pvarchiver-entrypoint"\]', text, re.M)
    for var in (
        "EPICS_CA_AUTO_ADDR_LIST=NO",
        "EPICS_CA_MAX_SEARCH_PERIOD=60",
        "ARCHAPPL_SHORT_TERM_FOLDER=/storage/sts",
        "PVARCHIVER_STORAGE=/storage",
    ):
        assert var in text, var
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert (
        ignore[ignore.index(".git") :]
        == (ROOT / ".containerignore")
        .read_text()
        .split()[(ROOT / ".containerignore").read_text().split().index(".git") :]
    )
    assert {".venv", "storage", "containerdata"} <= set(ignore)


def test_entrypoint_ends_in_exec() -> None:
    if shutil.which("sh") is None:
        pytest.skip("no POSIX sh on this machine to syntax-check the entrypoint")
    lines = [
        ln
        for ln in (DEPLOY / "entrypoint.sh").read_text().splitlines()
        if ln.strip() and not ln.lstrip().startswith("#")
    ]
    tail = "\n".join(lines[-2:])
    assert tail.startswith("exec pvarchiver serve"), tail
    assert subprocess.run(["sh", "-n", str(DEPLOY / "entrypoint.sh")]).returncode == 0


def test_compose_file() -> None:
    yaml = pytest.importorskip("yaml", reason="pyyaml missing (test extra)")
    doc = yaml.safe_load((ROOT / "compose.yaml").read_text())
    arch = doc["services"]["archiver"]
    ports = [re.sub(r"\$\{\w+:-([\d.]+)\}", r"\1", p) for p in arch["ports"]]
    ports = [p.removeprefix("0.0.0.0:") for p in ports]
    assert ports == [
        "17665:17665",
        "5064:5064/tcp",
        "5064:5064/udp",
        "5065:5065/tcp",
        "5065:5065/udp",
    ]
    assert arch["volumes"] == ["./containerdata:/storage"]
    assert arch["restart"] in ("unless-stopped", "always")
    assert arch["build"]["dockerfile"] == "Containerfile"
    assert "network_mode" not in arch  # a bridge network, as on Windows
    gw = doc["services"]["gateway"]
    assert gw["profiles"] == ["gateway"] and gw["network_mode"] == "host"
    assert gw["entrypoint"] == ["pvarchiver", "gateway"]
    # the gateway listens where the archiver searches
    sport = re.sub(r"\$\{\w+:-(\d+)\}", r"\1", gw["command"][gw["command"].index("-sport") + 1])
    addr = re.sub(r"\$\{\w+:-(\d+)\}", r"\1", arch["environment"]["EPICS_CA_ADDR_LIST"])
    assert addr == "host.docker.internal:" + sport == "host.docker.internal:9264"


@pytest.mark.parametrize("unit", ["pvarchiver.service", "pvarchiver-gateway.service"])
def test_systemd_units(unit: str) -> None:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string((DEPLOY / unit).read_text())
    svc = cp["Service"]
    assert svc["User"] == "pvarchiver"
    assert "exec " in svc["ExecStart"]  # the shell is replaced: systemd signals the archiver
    assert cp["Install"]["WantedBy"] == "multi-user.target"
    if unit == "pvarchiver.service":
        assert svc["KillSignal"] == "SIGTERM" and int(svc["TimeoutStopSec"]) >= 60
        assert "serve" in svc["ExecStart"]
    else:
        assert "gwcontainer.pvlist" in svc["ExecStart"] and "gwcontainer.acf" in svc["ExecStart"]


def test_windows_files() -> None:
    bat = (DEPLOY / "pvarchiver-gateway.bat").read_bytes()
    assert b"\r\n" in bat and b"\n" not in bat.replace(b"\r\n", b"")  # cmd wants CRLF
    assert b"-pvlist" in bat and b"-access" in bat and b"-sport" in bat
    svc = ET.parse(DEPLOY / "pvarchiver-service.xml").getroot()
    assert svc.tag == "service" and svc.findtext("id") == "pvarchiver"
    assert next(a.text for a in svc.findall("argument")) == "serve"
    # WinSW sends Ctrl+C, then waits this long before killing: room for the final flush
    assert re.fullmatch(r"\d+ sec", svc.findtext("stoptimeout") or "")


def test_gateway_config_examples_parse() -> None:
    from pvarchiver.gateway.access import GatewayAccess

    ga = GatewayAccess.load(DEPLOY / "gwcontainer.pvlist", DEPLOY / "gwcontainer.acf")
    assert ga.warnings == []
    match = ga.search("ANY:PV:NAME", "172.17.0.2")
    assert match is not None and match.real_name == "ANY:PV:NAME"
    container = ga.client(match, "pvarchiver", "3f2a9c0d1e2b").rights
    assert container.read and not container.write  # the archiver reads, never writes
    local = ga.client(match, "operator", "localhost").rights
    assert local.read and local.write


def test_healthcheck_script(tmp_path: Path) -> None:
    script = [sys.executable, str(DEPLOY / "healthcheck.py")]
    closed = subprocess.run(
        script,
        env={"PVARCHIVER_PORT": str(free_port())},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert closed.returncode == 1 and "unhealthy" in closed.stderr
    with running_server(tmp_path / "storage") as base:
        port = base.rsplit(":", 1)[1]
        ok = subprocess.run(script, env={"PVARCHIVER_PORT": port}, timeout=30)
        assert ok.returncode == 0


def test_demo_database_and_names() -> None:
    names = demo.demo_pv_names(3)
    assert names[:2] == ["demo:counter", "demo:sine"] and names[-1] == "demo:bulk:0002"
    db = demo.demo_db(3)
    for name in names:
        assert f'"{name}"' in db, name
    assert len(names) == len(set(names))


def test_demo_address_keeps_the_site_list() -> None:
    env = {"EPICS_CA_ADDR_LIST": "10.0.0.255 gw:9264"}
    assert demo.with_demo_address(env, 41234) == {
        "EPICS_CA_ADDR_LIST": "10.0.0.255 gw:9264 127.0.0.1:41234"
    }
    assert demo.with_demo_address({}, 5) == {"EPICS_CA_ADDR_LIST": "127.0.0.1:5"}
    again = demo.with_demo_address({"EPICS_CA_ADDR_LIST": "127.0.0.1:5"}, 5)
    assert again == {"EPICS_CA_ADDR_LIST": "127.0.0.1:5"}


@pytest.mark.parametrize("bad", ["many", "-1", "1e3", "100001"])
def test_demo_count_rejects_nonsense(bad: str) -> None:
    with pytest.raises(demo.DemoUnavailable, match="PVARCHIVER_DEMO_COUNT"):
        demo.demo_count({"PVARCHIVER_DEMO_COUNT": bad})
    assert demo.demo_count({}) == 0 and demo.demo_count({"PVARCHIVER_DEMO_COUNT": "12"}) == 12


def test_demo_without_ioc_package_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # a missing package cannot be caused for real without uninstalling it from the shared venv
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "epicscorelibs" else real(name, *a),
    )
    assert main(["serve", "--demo", "--storage", str(tmp_path / "st"), "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert 'pip install "pvarchiver[demo]"' in err


@pytest.mark.slow
def test_serve_demo_archives_its_pvs(tmp_path: Path) -> None:
    """The first-user path: one command, data within a minute, the IOC gone afterwards."""
    pytest.importorskip("epicscorelibs.ioc", reason="epicscorelibs (demo extra) missing")
    t0 = time.monotonic()
    with running_server(tmp_path / "storage", args=["--demo"]) as base:
        log = next(tmp_path.glob("server-*.log"))
        found = re.search(r"Demo IOC running on 127\.0\.0\.1:(\d+)", log.read_text())
        assert found, log.read_text()

        def data() -> dict[str, int]:
            out = {}
            for pv in ("demo:sine", "demo:counter", "demo:wave", "demo:text", "demo:mode"):
                r = httpx.get(base + "/retrieval/data/getData.json", params={"pv": pv}, timeout=10)
                out[pv] = len(r.json()[0]["data"]) if r.status_code == 200 else 0
            return out

        assert wait_for(lambda: all(data().values()), timeout=60), data()
        print(f"demo data served {time.monotonic() - t0:.1f} s after the command")
        r = httpx.get(base + "/retrieval/data/getData.json", params={"pv": "demo:text"})
        assert r.json()[0]["data"][0]["val"] == "hello from the pvarchiver demo"
        r = httpx.get(base + "/mgmt/bpl/getPVStatus", params={"pv": "demo:*"}, timeout=10)
        statuses = {row["pvName"]: row["status"] for row in r.json()}
        assert set(demo.demo_pv_names()) <= set(statuses), statuses
        ioc_port = int(found.group(1))
    # the server is gone; so is its IOC (nothing listens on its port any more)
    import socket

    def ioc_gone() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", ioc_port)) != 0

    assert wait_for(ioc_gone, timeout=20)


def _minimal_rootfs() -> object:
    spec = importlib.util.spec_from_file_location("minimal_rootfs", DEPLOY / "minimal-rootfs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ELF and ld.so: Linux only")
def test_minimal_rootfs_finds_libraries_and_keeps_symlinks(tmp_path: Path) -> None:
    """The pieces of deploy/minimal-rootfs.py the image build relies on (the whole script runs
    in every image build and the result is run chrooted there: tests/test_deploy_container.py)."""
    m = _minimal_rootfs()
    loader = m.interpreter_of(sys.executable)  # type: ignore[attr-defined]
    assert Path(loader).exists(), loader
    libs = m.needed_libraries(loader, os.path.realpath(sys.executable))  # type: ignore[attr-defined]
    assert any(Path(lib).name.startswith("libc.so") for lib in libs), libs
    # a file reached through a directory symlink and a file symlink: both links reproduced
    src = tmp_path / "src"
    (src / "real").mkdir(parents=True)
    (src / "real" / "python3.11").write_text("x")
    (src / "real" / "python3").symlink_to("python3.11")
    (src / "bin").symlink_to("real")
    fs = m.Rootfs(tmp_path / "dest")  # type: ignore[attr-defined]
    fs.put(str(src / "bin" / "python3"))
    dest = tmp_path / "dest" / str(src).lstrip("/")
    assert os.readlink(dest / "bin") == "real"
    assert os.readlink(dest / "real" / "python3") == "python3.11"
    assert (dest / "bin" / "python3").read_text() == "x"
