"""``pvarchiver serve --archive PV``: a real IOC archived, readable at once over HTTP, and
SIGTERM loses nothing."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import httpx
import pytest

from pvarchiver.storage import default_store_urls, open_store, parse_store_url

from .helpers.wait import wait_for
from .http_server import running_server
from .ioc import IOC

DB = 'record(calc, "S:CNT") { field(SCAN, ".1 second") field(CALC, "A+1") field(INPA, "S:CNT") }\n'


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(t))) + "Z"


@pytest.mark.slow
def test_serve_archives_and_sigterm_flushes_everything(tmp_path: Path) -> None:
    root = tmp_path / "storage"
    with IOC(DB, tmp_path / "ioc") as ioc:
        env = {
            "EPICS_CA_ADDR_LIST": f"127.0.0.1:{ioc.port}",
            "EPICS_CA_AUTO_ADDR_LIST": "NO",
            "EPICS_CA_SERVER_PORT": str(ioc.port),
            "EPICS_CA_REPEATER_PORT": str(ioc.repeater_port),
        }
        with running_server(root, env, ["--archive", "S:CNT"]) as base:
            seen: list[float] = []

            def twenty_served() -> bool:
                nonlocal seen
                r = httpx.get(
                    base + "/retrieval/data/getData.json",
                    params={
                        "pv": "S:CNT",
                        "from": iso(time.time() - 600),
                        "to": iso(time.time() + 60),
                    },
                    timeout=10,
                )
                if r.status_code == 200:
                    seen = [d["val"] for d in r.json()[0]["data"]]
                return len(seen) >= 20

            wait_for(twenty_served, 60, 0.2)
            # served from the engine's buffer: the write period (10 s) has not passed yet
            assert len(seen) >= 20, seen
            r = httpx.get(base + "/retrieval/bpl/getMatchingPVs", params={"pv": "S:*"})
            assert r.json() == ["S:CNT"]
            assert all(b - a == 1.0 for a, b in itertools.pairwise(seen))
        # the server got SIGTERM when the block ended; everything it had must be on disk
    stores = [open_store(parse_store_url(u)) for u in default_store_urls(root)]
    stored = [s.val for st in reversed(stores) for s in st.read_all("S:CNT")]
    # every value served before SIGTERM is on disk, in order, and nothing is missing after
    assert stored[: len(seen)] == seen
    assert all(b - a == 1.0 for a, b in itertools.pairwise(stored))
