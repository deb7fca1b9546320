"""The seed's scenario in a real container: the image built from ``Containerfile``, run by a
private dockerd with only 17665 and 5064/5065 tcp+udp published and ``./containerdata`` on
``/storage``, no host networking.

No image registry is reachable here, so the base image is a debootstrapped Debian with
Python (``deploy/ci-base-image.sh``, cached under ``$PVARCHIVER_CI_CACHE``) passed as the
``BASE`` build argument, and pip in the build installs from wheels built on the host
(``WHEELS``), because PyPI is only reachable through a TLS-intercepting proxy the image does
not trust. Users get the slim official Python image and PyPI by default.

Also measured and printed: image size, time to ready, time for ``docker stop``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from .deploy_harness import (
    ARTIFACTS,
    ROOT,
    PrivateDockerd,
    base_image,
    build_context,
    missing_tools,
    run,
)
from .deploy_scenario import (
    DB,
    ArchiverAPI,
    HostSide,
    Notes,
    check_archiving,
    check_restart,
)
from .helpers.net import free_port
from .helpers.wait import wait_for
from .ioc import IOC
from .requirements import require

pytestmark = pytest.mark.slow
IMAGE = "pvarchiver:ci"
UID = 10001  # the image's user (Containerfile)


@pytest.fixture(scope="module")
def dockerd() -> object:
    reason = missing_tools("dockerd", "docker", "debootstrap", "socat", "iptables")
    if reason:
        pytest.skip(reason)
    try:
        with PrivateDockerd() as d:
            yield d
    except RuntimeError as e:
        if "dockerd did not start" in str(e):
            pytest.skip(str(e)[:500])
        raise


@pytest.fixture(scope="module")
def context(dockerd: PrivateDockerd, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """The base image (imported once) and the build context with the wheels."""
    tmp = tmp_path_factory.mktemp("image")
    return base_image(dockerd, tmp), build_context(tmp / "ctx")


def build(dockerd: PrivateDockerd, context: tuple[str, Path], tag: str, *args: str) -> float:
    base, ctx = context
    t0 = time.monotonic()
    dockerd.docker(
        "build",
        "-q",
        "-f",
        "Containerfile",
        "--build-arg",
        f"BASE={base}",
        "--build-arg",
        "WHEELS=wheels",
        *args,
        "-t",
        tag,
        str(ctx),
        timeout=900,
    )
    built = time.monotonic() - t0
    dockerd.docker("image", "prune", "-f")  # the previous run's image, now untagged
    return built


@pytest.fixture(scope="module")
def image(dockerd: PrivateDockerd, context: tuple[str, Path]) -> str:
    built = build(dockerd, context, IMAGE)
    size = int(dockerd.docker("image", "inspect", "-f", "{{.Size}}", IMAGE).stdout)
    base_size = int(dockerd.docker("image", "inspect", "-f", "{{.Size}}", context[0]).stdout)
    # the image is FROM scratch: what of it is the venv, what the interpreter, libraries, sh
    du = dockerd.docker("run", "--rm", "--entrypoint", "python3", IMAGE, "-c", _DU).stdout
    venv, rest = (int(n) for n in du.split())
    numbers = {
        "image build (s)": round(built, 1),
        "image size (MB)": round(size / 1e6, 1),
        "of which the venv (MB)": round(venv / 1e6, 1),
        "of which interpreter, stdlib, libraries, sh (MB)": round(rest / 1e6, 1),
        "build stage's base image (MB)": round(base_size / 1e6, 1),
    }
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "image.json").write_text(json.dumps(numbers, indent=1))
    print(numbers)
    assert size < 150e6, numbers  # the target of issue #7
    return IMAGE


_DU = """
import os
def du(top, skip=None):
    seen, total = set(), 0
    for root, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if os.path.join(root, d) not in (skip, "/proc", "/sys", "/dev")]
        for f in files:
            st = os.lstat(os.path.join(root, f))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total
print(du("/opt/pvarchiver"), du("/", skip="/opt/pvarchiver"))
"""


def storage_dir(path: Path) -> Path:
    path.mkdir()
    os.chown(path, UID, UID)  # what docs/deployment.md tells users to do
    return path


def test_image_runs_as_non_root_with_storage_volume(dockerd: PrivateDockerd, image: str) -> None:
    info = json.loads(dockerd.docker("image", "inspect", image).stdout)[0]["Config"]
    assert info["User"] == f"{UID}:{UID}"
    assert "/storage" in info["Volumes"]
    assert {"17665/tcp", "5064/tcp", "5064/udp", "5065/tcp", "5065/udp"} <= set(
        info["ExposedPorts"]
    )
    assert info["Healthcheck"]["Test"][0] == "CMD"
    env = dict(e.split("=", 1) for e in info["Env"])
    assert env["EPICS_CA_AUTO_ADDR_LIST"] == "NO"
    assert float(env["EPICS_CA_MAX_SEARCH_PERIOD"]) <= 60
    out = dockerd.docker("run", "--rm", image, "sh", "-c", "id -u; ls -d /storage/*").stdout
    assert out.split() == [str(UID), "/storage/lts", "/storage/mts", "/storage/sts"]
    # pip, the source tree and the base's package manager stay in the build stage
    out = dockerd.docker(
        "run",
        "--rm",
        image,
        "sh",
        "-c",
        "ls /opt/pvarchiver/bin; for p in /src /usr/bin/apt /usr/bin/dpkg; do "
        "if test -e $p; then echo $p; fi; done",
    ).stdout
    assert not {"pip", "/src", "/usr/bin/apt", "/usr/bin/dpkg"} & set(out.split()), out


def test_container_scenario(dockerd: PrivateDockerd, image: str, tmp_path: Path) -> None:
    notes = Notes()
    artifacts = ARTIFACTS / "container"
    storage = storage_dir(tmp_path / "containerdata")
    bridge = dockerd.bridge_address()
    name = f"pvarchiver-ci-{os.getpid()}"
    with HostSide(tmp_path / "host", bridge, notes) as host:
        http, ca, rep = free_port(), free_port(), free_port()
        args = [
            "run",
            "-d",
            "--name",
            name,
            "-p",
            f"127.0.0.1:{http}:17665",
            "-p",
            f"127.0.0.1:{ca}:5064/tcp",
            "-p",
            f"127.0.0.1:{ca}:5064/udp",
            "-p",
            f"127.0.0.1:{rep}:5065/tcp",
            "-p",
            f"127.0.0.1:{rep}:5065/udp",
            "-v",
            f"{storage}:/storage",
            "-e",
            f"EPICS_CA_ADDR_LIST={host.ca_addr}",
            image,
            "serve",
        ]
        t0 = time.monotonic()
        dockerd.docker(*args)
        api = ArchiverAPI(f"http://127.0.0.1:{http}")
        try:
            api.wait_up(60)
            notes.numbers["container ready after docker run (s)"] = round(time.monotonic() - t0, 2)
            host.assert_ioc_hidden(["docker", "exec", name], dockerd.env)
            check_archiving(api, storage, notes, artifacts)

            def stop_and_start() -> None:
                t = time.monotonic()
                dockerd.docker("stop", "-t", "120", name)
                notes.numbers["docker stop (s)"] = round(time.monotonic() - t, 2)
                state = json.loads(dockerd.docker("inspect", name).stdout)[0]["State"]
                # SIGTERM reached the archiver (PID 1), it shut down in order: not SIGKILL (137)
                assert state["ExitCode"] in (0, 143), state
                logs = dockerd.docker("logs", name).stderr
                assert "Application shutdown complete" in logs, logs[-3000:]
                dockerd.docker("start", name)

            check_restart(api, storage, notes, stop_and_start, hard=False)

            def healthy() -> bool:
                out = dockerd.docker("inspect", "-f", "{{.State.Health.Status}}", name).stdout
                return out.strip() == "healthy"

            # the image's own HEALTHCHECK (first run 30 s after start)
            assert wait_for(healthy, timeout=90, interval=1), dockerd.docker(
                "inspect", "-f", "{{json .State.Health}}", name
            ).stdout
        except BaseException:
            logs = dockerd.docker("logs", name, check=False)
            print(logs.stdout[-4000:], logs.stderr[-6000:])
            raise
        finally:
            dockerd.docker("rm", "-f", name, check=False)
    assert not (ROOT / "containerdata").exists()  # nothing written into the checkout
    notes.finish()


def test_entrypoint_in_the_container(dockerd: PrivateDockerd, image: str, tmp_path: Path) -> None:
    # a root-owned folder on /storage: a clear message and exit 78, no traceback, no restart loop
    (tmp_path / "rootowned").mkdir()
    res = dockerd.docker(
        "run", "--rm", "-v", f"{tmp_path / 'rootowned'}:/storage", image, check=False
    )
    assert res.returncode == 78, res
    assert "cannot write to /storage" in res.stderr and "chown" in res.stderr, res.stderr
    # no EPICS_CA_ADDR_LIST given: the entrypoint searches the host (docker0's address)
    name = f"pvarchiver-ci-ep-{os.getpid()}"
    storage = storage_dir(tmp_path / "containerdata")
    dockerd.docker("run", "-d", "--name", name, "-v", f"{storage}:/storage", image)
    try:
        want = f"searching the host at {dockerd.bridge_address()}"
        assert wait_for(lambda: want in dockerd.docker("logs", name).stderr, timeout=30), (
            dockerd.docker("logs", name).stderr
        )
    finally:
        dockerd.docker("rm", "-f", name, check=False)


def test_demo_in_a_container(
    dockerd: PrivateDockerd, context: tuple[str, Path], tmp_path: Path
) -> None:
    """A new user's first container: `docker run -p 17665:17665 IMAGE --demo`, data at once."""
    tag = IMAGE + "-demo"
    build(dockerd, context, tag, "--build-arg", "EXTRAS=demo")
    name = f"pvarchiver-ci-demo-{os.getpid()}"
    http = free_port()
    storage = storage_dir(tmp_path / "containerdata")
    t0 = time.monotonic()
    dockerd.docker(
        "run",
        "-d",
        "--name",
        name,
        "-p",
        f"127.0.0.1:{http}:17665",
        "-v",
        f"{storage}:/storage",
        tag,
        "--demo",
    )
    api = ArchiverAPI(f"http://127.0.0.1:{http}")
    try:
        api.wait_up(60)
        assert wait_for(lambda: len(api.values("demo:sine")) >= 5, timeout=60), dockerd.docker(
            "logs", name
        ).stderr[-3000:]
        print(f"demo data served {time.monotonic() - t0:.1f} s after docker run")
        dockerd.docker("stop", "-t", "60", name)
        state = json.loads(dockerd.docker("inspect", name).stdout)[0]["State"]
        assert state["ExitCode"] in (0, 143), state
    finally:
        dockerd.docker("rm", "-f", name, check=False)


def test_compose_with_gateway_profile(
    dockerd: PrivateDockerd, context: tuple[str, Path], image: str, tmp_path: Path
) -> None:
    """The repository's compose.yaml as a user runs it: `docker-compose --profile gateway up`.

    The gateway service (host networking) serves a host IOC; the archiver (bridge network,
    published ports only) finds it at host.docker.internal; the data lands in ./containerdata
    beside compose.yaml; `stop`/`start` of the archiver keeps every PV archived."""
    compose = shutil.which("docker-compose")
    require(compose is not None, "docker-compose missing (apt-get install docker-compose)")
    assert compose is not None
    base, ctx = context
    project = tmp_path / "project"
    shutil.copytree(ctx, project, ignore=shutil.ignore_patterns("containerdata"))
    storage = storage_dir(project / "containerdata")
    notes = Notes()
    with IOC(DB, tmp_path / "ioc") as ioc:
        http = free_port()
        env = dict(
            dockerd.env,
            COMPOSE_PROJECT_NAME=f"pvci{os.getpid()}",
            PVARCHIVER_BASE=base,
            PVARCHIVER_WHEELS="wheels",
            PVARCHIVER_PUBLISH_IP="127.0.0.1",
            PVARCHIVER_HTTP_PORT=str(http),
            PVARCHIVER_CA_PORT=str(free_port()),
            PVARCHIVER_CA_REPEATER_PORT=str(free_port()),
            GW_SPORT=str(free_port()),
            GW_CIP="127.0.0.1",
            GW_CPORT=str(ioc.port),
        )

        def dc(*args: str) -> subprocess.CompletedProcess[str]:
            return run([compose, "--profile", "gateway", *args], env=env, cwd=project, timeout=900)

        api = ArchiverAPI(f"http://127.0.0.1:{http}")
        try:
            dc("up", "-d", "--build")
            api.wait_up(90)
            check_archiving(api, storage, notes, ARTIFACTS / "compose")

            def stop_and_start() -> None:
                dc("stop", "archiver")
                dc("start", "archiver")

            check_restart(api, storage, notes, stop_and_start, hard=False)
        except BaseException:
            print(
                run(
                    [compose, "--profile", "gateway", "logs", "--no-color"],
                    env=env,
                    cwd=project,
                    check=False,
                ).stdout[-8000:]
            )
            raise
        finally:
            run(
                [compose, "--profile", "gateway", "down", "--remove-orphans"],
                env=env,
                cwd=project,
                check=False,
                timeout=300,
            )
    notes.finish()
