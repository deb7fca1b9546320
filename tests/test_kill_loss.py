"""SIGKILL over and over while ``pvarchiver serve`` archives, restarted each time: what each
kill costs, measured on the product as users run it.

20 calc records count up by one every 0.1 s in a real IOC, so every missing sample shows as a
gap in the stored values. The archiver is killed 50 times at random moments: mostly while
archiving (0.5 to 2.5 s after it came up), some while it is still starting (replaying the
journal, connecting). Every restart resumes the PVs from the registry without a request.
Afterwards every file must read back, values and timestamps strictly increasing (nothing
twice), and the samples lost per kill, which include the restart itself, are printed and
must stay within the issue's bound.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pvarchiver.storage import default_store_urls, open_store, parse_store_url
from pvarchiver.storage.validate import validate_file

from .helpers.net import free_port
from .helpers.wait import wait_for
from .http_server import SRC
from .ioc import IOC, counter_db

N_PVS = 20
PERIOD = 0.1
KILLS = 50
#: the issue's bound: at most 1 s of samples per PV lost per kill, restart included
MAX_LOSS_PER_KILL_S = 1.0

pytestmark = pytest.mark.slow


def _start(
    root: Path, env: dict[str, str], port: int, log: Path, archive: bool
) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "pvarchiver", "serve", "--storage", str(root)]
    args += ["--host", "127.0.0.1", "--port", str(port), "--initial-sampling", "0.5"]
    if archive:
        args += [a for i in range(N_PVS) for a in ("--archive", f"KL:C{i:05d}")]
    with open(log, "ab") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)


def _archiving(base: str) -> bool:
    names = ",".join(f"KL:C{i:05d}" for i in range(N_PVS))
    try:
        r = httpx.get(base + "/mgmt/bpl/getPVStatus", params={"pv": names}, timeout=2)
    except httpx.HTTPError:
        return False
    return r.status_code == 200 and all(row["status"] == "Being archived" for row in r.json())


def _wait_archiving(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until the archiver serves every PV as Being archived; fails at once if it exited."""
    up = wait_for(lambda: proc.poll() is not None or _archiving(base), 60, 0.1)
    assert up and proc.poll() is None, log.read_text()[-3000:]


def _latest(base: str) -> dict[str, float]:
    """Each PV's newest value as the running archiver serves it (its buffer included)."""
    out = {}
    now = time.time()
    for i in range(N_PVS):
        pv = f"KL:C{i:05d}"
        r = httpx.get(
            base + "/retrieval/data/getData.json",
            params={
                "pv": pv,
                "from": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60)),
                "to": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 60)),
            },
            timeout=10,
        )
        out[pv] = r.json()[0]["data"][-1]["val"]
    return out


def test_fifty_kills_lose_under_a_second_each(tmp_path: Path) -> None:
    rng = random.Random(1234)
    root = tmp_path / "storage"
    log = tmp_path / "serve.log"
    with IOC(counter_db("KL:C", N_PVS, ".1 second"), tmp_path / "ioc") as ioc:
        env = dict(
            os.environ,
            PYTHONPATH=str(SRC),
            EPICS_CA_AUTO_ADDR_LIST="NO",
            EPICS_CA_ADDR_LIST=f"127.0.0.1:{ioc.port}",
            EPICS_CA_SERVER_PORT=str(ioc.port),
            EPICS_CA_REPEATER_PORT=str(ioc.repeater_port),
        )
        for v in (
            "ARCHAPPL_SHORT_TERM_FOLDER",
            "ARCHAPPL_MEDIUM_TERM_FOLDER",
            "ARCHAPPL_LONG_TERM_FOLDER",
        ):
            env.pop(v, None)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = _start(root, env, port, log, archive=True)
        _wait_archiving(base, proc, log)
        t_first = time.time()
        v_first = _latest(base)
        for k in range(KILLS):
            # one kill in five lands while the archiver is still starting (journal replay,
            # registry, CA connects); the others while it archives
            alive = rng.uniform(0.05, 0.6) if k % 5 == 4 else rng.uniform(0.5, 2.5)
            time.sleep(alive)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            proc = _start(root, env, port, log, archive=False)
        _wait_archiving(base, proc, log)
        time.sleep(1.0)
        t_last = time.time()
        v_last = _latest(base)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
    # every file reads back whole
    files = list(root.rglob("*.pb"))
    assert files
    for f in files:
        rep = validate_file(f)
        assert rep.ok, (f, rep)
    stores = [open_store(parse_store_url(u)) for u in default_store_urls(root)]
    losses: list[float] = []
    worst_gap = 0.0
    for i in range(N_PVS):
        pv = f"KL:C{i:05d}"
        samples = [s for st in reversed(stores) for s in st.read_all(pv)]
        ts = [(s.secs, s.nanos) for s in samples]
        vals = [s.val for s in samples]
        assert ts == sorted(set(ts)), f"{pv}: timestamps repeated or out of order"
        assert all(b > a for a, b in itertools.pairwise(vals)), f"{pv}: values repeat"
        # the counter went up by one every 0.1 s the whole time: every value between the
        # one served before the first kill and the one served after the last restart that
        # is not stored was lost
        v = [x for x in vals if v_first[pv] <= x <= v_last[pv]]
        missing = (v_last[pv] - v_first[pv] + 1) - len(v)
        losses.append(missing * PERIOD / KILLS)
        edges = [v_first[pv] - 1, *v, v_last[pv] + 1]
        worst_gap = max(worst_gap, max((b - a - 1) * PERIOD for a, b in itertools.pairwise(edges)))
    per_kill = max(losses)
    print(
        f"\n{KILLS} SIGKILLs over {t_last - t_first:.0f} s, {N_PVS} PVs at 10 Hz: "
        f"loss per kill (restart included) {sum(losses) / len(losses):.2f} s mean over PVs, "
        f"{per_kill:.2f} s for the worst PV; longest single gap {worst_gap:.2f} s"
    )
    assert per_kill <= MAX_LOSS_PER_KILL_S
