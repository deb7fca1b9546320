"""The seed's deployment scenario as steps shared by the container and namespace rehearsals.

Host side: a real IOC, and ``pvarchiver gateway`` with ``deploy/gwcontainer.pvlist`` and
``.acf`` in front of it, both on loopback; the isolated archiver reaches them only through a
port forwarded to the address it can see (a veth or docker0 address). Archiver side: PVs
archived through the web UI in headless Chromium, status ``Initial sampling`` then ``Being
archived``, data served, ``.pb`` files under the mapped ``containerdata/sts``; then a stop or
``kill -9`` and a restart, after which every PV is archived again with no new request and
nothing stored before is missing.

A part not built yet is never imitated: the step that needs it is recorded in
:class:`Notes` and the test ends as *skipped* naming it (after running and asserting every
step that could run), so a missing part never shows as a pass.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from pvarchiver.storage import default_store_urls, open_store, parse_store_url

from .deploy_harness import ROOT, SRC, Proc, forwarded, wait_port
from .helpers.net import free_port
from .helpers.wait import wait_for
from .ioc import IOC
from .requirements import require

PVS = ["DEP:cnt1", "DEP:cnt2", "DEP:cnt3"]
DB = "".join(
    f'record(calc, "{pv}") {{ field(SCAN, ".1 second") field(CALC, "A+1") field(INPA, "{pv}") '
    f'field(EGU, "cts") }}\n'
    for pv in PVS
)
CHROMIUM = "/usr/bin/chromium"
GW_PREFIX = "GWCONTAINER"


@dataclass
class Notes:
    """What could not run and why; turned into the skip reason at the end of the test."""

    skipped: list[str] = field(default_factory=list)
    numbers: dict[str, object] = field(default_factory=dict)

    def skip(self, step: str) -> None:
        if step not in self.skipped:
            self.skipped.append(step)

    def finish(self) -> None:
        """Call last: skip (never pass) when any step had to be left out."""
        for k, v in self.numbers.items():
            print(f"{k}: {v}")
        # under CI every part is installed: a left-out step is a failure there
        require(not self.skipped, "scenario ran without: " + "; ".join(self.skipped))


def browser_reason() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} missing (apt-get install chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "playwright missing (pip install playwright)"
    return None


class HostSide:
    """IOC and gateway on the host's loopback, published on ``edge`` by a socat forward.

    ``ca_addr`` is what the isolated archiver puts in ``EPICS_CA_ADDR_LIST``. The gateway's
    server port and the forwarded port have the same number, because a CA search reply
    carries the TCP port the client must connect to.
    """

    def __init__(self, workdir: Path, edge: str, notes: Notes) -> None:
        self.workdir, self.edge, self.notes = workdir, edge, notes
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = _port_free_on(edge)
        self.ca_addr = f"{edge}:{self.port}"
        self.ioc: IOC | None = None
        self.gateway: Proc | None = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> HostSide:
        try:
            # the IOC's ports must not be the gateway's (free_port can give the same number
            # twice while nothing is bound to it yet): EADDRINUSE for the gateway otherwise
            taken = {self.port}
            ports = []
            while len(ports) < 2:
                p = free_port()
                if p not in taken:
                    taken.add(p)
                    ports.append(p)
            self.ioc = IOC(DB, self.workdir / "ioc", port=ports[0], repeater_port=ports[1])
            self.ioc.start()
            self.gateway = self._start_gateway(self.ioc)
            self._stack.enter_context(
                forwarded(self.edge, self.port, "127.0.0.1", self.port, self.workdir)
            )
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start_gateway(self, ioc: IOC) -> Proc:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}
        env.update(
            PYTHONPATH=str(SRC),
            EPICS_CA_REPEATER_PORT=str(ioc.repeater_port),
            EPICS_CAS_AUTO_BEACON_ADDR_LIST="NO",
            EPICS_CAS_BEACON_ADDR_LIST="127.0.0.1",
        )
        cmd = [
            sys.executable,
            "-m",
            "pvarchiver",
            "gateway",
            "-pvlist",
            str(ROOT / "deploy" / "gwcontainer.pvlist"),
            "-access",
            str(ROOT / "deploy" / "gwcontainer.acf"),
            "-cip",
            "127.0.0.1",
            "-cport",
            str(ioc.port),
            "-sip",
            "127.0.0.1",
            "-sport",
            str(self.port),
            "-prefix",
            GW_PREFIX,
        ]
        gw = Proc(cmd, self.workdir / "gateway.log", env=env)
        wait_port("127.0.0.1", self.port, 30, gw)
        return gw

    def assert_ioc_hidden(self, inside: list[str], env: dict[str, str] | None = None) -> None:
        """From the isolated side (``inside`` runs a command there), the IOC itself cannot be
        reached, so whatever the archiver gets came through the forwarded gateway port."""
        if self.gateway is None or self.ioc is None:
            return
        probe = (
            "import socket, sys; s = socket.socket(); s.settimeout(3); "
            f"sys.exit(7 if s.connect_ex(('{self.edge}', {self.ioc.port})) == 0 else 0)"
        )
        res = subprocess.run(
            [*inside, "python3", "-c", probe], capture_output=True, text=True, env=env
        )
        assert res.returncode == 0, f"the IOC port is reachable from inside: {res}"

    def __exit__(self, *exc: object) -> None:
        self._stack.close()
        if self.gateway is not None:
            self.gateway.stop()
        if self.ioc is not None:
            self.ioc.kill()


def _port_free_on(edge: str) -> int:
    """A port free on loopback and on the edge address (forward and target share it)."""
    import socket

    for _ in range(50):
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind((edge, port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no port free on both 127.0.0.1 and {edge}")


class ArchiverAPI:
    """The archiver's HTTP API, as the scenario uses it."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = httpx.Client(base_url=base, timeout=20)

    def wait_up(self, timeout: float = 60, alive: Callable[[], bool] = lambda: True) -> float:
        """Seconds until /retrieval/bpl/getVersion answered; raises when it never does."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if not alive():
                raise RuntimeError("the archiver exited")
            with contextlib.suppress(httpx.HTTPError):
                if self.http.get("/retrieval/bpl/getVersion", timeout=2).status_code == 200:
                    return time.monotonic() - t0
            time.sleep(0.1)
        raise RuntimeError(f"{self.base} did not answer within {timeout} s")

    def has_mgmt(self) -> bool:
        return self.http.get("/mgmt/bpl/getPVStatus", params={"pv": PVS[0]}).status_code == 200

    def has_ui(self) -> bool:
        return self.http.get("/mgmt/ui/index.html").status_code == 200

    def statuses(self, pvs: list[str]) -> dict[str, str]:
        r = self.http.get("/mgmt/bpl/getPVStatus", params={"pv": ",".join(pvs)})
        r.raise_for_status()
        return {row["pvName"]: row["status"] for row in r.json()}

    def archive_bpl(self, pvs: list[str]) -> None:
        r = self.http.post("/mgmt/bpl/archivePV", json=[{"pv": p} for p in pvs])
        assert r.status_code == 200, r.text

    def values(self, pv: str) -> list[float]:
        now = time.time()
        r = self.http.get(
            "/retrieval/data/getData.json",
            params={"pv": pv, "from": _iso(now - 3600), "to": _iso(now + 60)},
        )
        if r.status_code != 200:
            return []
        return [d["val"] for d in r.json()[0]["data"]]


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(t))) + "Z"


def sts_files(storage: Path, pv: str) -> list[Path]:
    folder = storage / "sts" / Path(*pv.split(":")[:-1])
    return sorted(folder.glob(pv.split(":")[-1] + ":*.pb")) if folder.is_dir() else []


def stored_values(storage: Path, pv: str) -> list[float]:
    """What is on disk for ``pv`` across STS, MTS and LTS, oldest first."""
    stores = [open_store(parse_store_url(u)) for u in default_store_urls(storage)]
    rows = [(s.secs, s.nanos, s.val) for st in stores for s in st.read_all(pv)]
    return [v for _, _, v in sorted(rows)]


def containerfile_env(storage: Path) -> dict[str, str]:
    """The image's ENV lines, with /storage mapped to ``storage`` (PATH left to the caller).

    The namespace rehearsal runs with exactly the variables the image sets, read from the
    Containerfile itself so the two can never drift apart.
    """
    text = (ROOT / "Containerfile").read_text()
    block = re.search(r"^ENV (.*?)(?<!\\)\n", text, re.S | re.M)
    assert block is not None, "no ENV instruction in the Containerfile"
    pairs = re.findall(r"(\w+)=(\S+)", block.group(1).replace("\\\n", " "))
    return {k: v.replace("/storage", str(storage)) for k, v in pairs if k != "PATH"}


@contextlib.contextmanager
def browser(artifacts: Path) -> Iterator[Any]:
    """A headless Chromium page (Debian's chromium driven by Playwright, never downloaded)."""
    from playwright.sync_api import sync_playwright

    artifacts.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
            ],
        )
        page = b.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(30_000)
        try:
            yield page
        finally:
            b.close()


def archive_pvs(api: ArchiverAPI, notes: Notes, artifacts: Path) -> list[str]:
    """Request archiving (web UI, else BPL) and follow the statuses; returns those seen."""
    seen: list[str] = []
    reason = browser_reason() or (None if api.has_ui() else "the web UI (/mgmt/ui/) not served")
    if reason is None:
        with browser(artifacts) as page:
            page.goto(f"{api.base}/mgmt/ui/index.html")
            page.fill("#archstatpVNames", "\n".join(PVS))
            page.screenshot(path=str(artifacts / "01-typed.png"))
            page.click("#archstatArchive")
            page.wait_for_selector('#archstatsTable tr[data-status="Initial sampling"]')
            seen.append("Initial sampling")
            page.screenshot(path=str(artifacts / "02-initial-sampling.png"))
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                rows = page.locator("#archstatsTable tbody tr")
                got = {
                    rows.nth(i).get_attribute("data-pv"): rows.nth(i).get_attribute("data-status")
                    for i in range(rows.count())
                }
                if all(got.get(p) == "Being archived" for p in PVS):
                    seen.append("Being archived")
                    break
                page.wait_for_timeout(200)
            page.screenshot(path=str(artifacts / "03-being-archived.png"))
    else:
        notes.skip(f"archiving through the web UI ({reason}: used the BPL archivePV)")
        api.archive_bpl(PVS)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            now = api.statuses(PVS)
            for s in now.values():
                if not seen or seen[-1] != s:
                    seen.append(s)
            if all(now.get(p) == "Being archived" for p in PVS):
                break
            time.sleep(0.1)
    assert api.statuses(PVS) == dict.fromkeys(PVS, "Being archived"), seen
    return seen


def check_archiving(api: ArchiverAPI, storage: Path, notes: Notes, artifacts: Path) -> None:
    """From a fresh start: archive, statuses, data served, ``.pb`` files in the STS."""
    assert api.has_mgmt(), "the archiver does not serve /mgmt/bpl"
    seen = archive_pvs(api, notes, artifacts)
    assert "Initial sampling" in seen and seen[-1] == "Being archived", seen
    assert wait_for(lambda: all(len(api.values(p)) >= 20 for p in PVS), timeout=90), {
        p: api.values(p)[-5:] for p in PVS
    }
    for p in PVS:
        vals = api.values(p)
        assert all(b - a == 1.0 for a, b in itertools.pairwise(vals)), (p, vals)
    # the engine writes on its period (10 s): files appear in the mapped folder on the host
    assert wait_for(lambda: all(sts_files(storage, p) for p in PVS), timeout=60), sorted(
        str(f.relative_to(storage)) for f in storage.rglob("*")
    )


def check_restart(
    api: ArchiverAPI, storage: Path, notes: Notes, restart: Callable[[], None], hard: bool
) -> None:
    """Restart (``hard``: after ``kill -9``) and check every PV is archived again, nothing lost.

    Soft (SIGTERM): everything the archiver served before is on disk afterwards. Hard: what
    was on disk at the moment of the kill is still there and readable (the samples only in
    memory are by definition gone; the AA loses them too).
    """
    if hard:
        before = {p: stored_values(storage, p) for p in PVS}
        assert all(before.values()), before
    else:
        before = {p: api.values(p) for p in PVS}
    restart()
    if not hard:
        on_disk = {p: stored_values(storage, p) for p in PVS}
        for p in PVS:
            assert on_disk[p][: len(before[p])] == before[p], (p, before[p][-5:], on_disk[p][-5:])
    t = api.wait_up(90)
    notes.numbers[f"ready after {'kill -9' if hard else 'stop'}/start (s)"] = round(t, 2)
    # no request from anyone: the registry alone brings every PV back
    assert wait_for(
        lambda: api.statuses(PVS) == dict.fromkeys(PVS, "Being archived"), timeout=60
    ), api.statuses(PVS)

    def resumed() -> bool:
        return all(api.values(p) and api.values(p)[-1] > max(before[p]) + 5 for p in PVS)

    assert wait_for(resumed, timeout=120), {p: api.values(p)[-3:] for p in PVS}
    for p in PVS:
        after = api.values(p)
        assert after[: len(before[p])] == before[p], (p, before[p][-5:], after[-8:])
        # in order, no duplicates across the restart (a counter only grows)
        assert all(b > a for a, b in itertools.pairwise(after)), p
