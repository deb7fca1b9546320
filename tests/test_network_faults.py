"""Networks that misbehave, for real, through ``pvarchiver serve`` (issue 15, item 5).

The IOC's packets are dropped with iptables rules on the loopback interface that match only
this test's IOC ports (each rule tagged with a comment and removed afterwards):

* everything to and from the IOC dropped for 60 s, then restored: the archiver notices the
  dead circuit (``EPICS_CA_CONN_TMO``), reports the PV disconnected, reconnects after the
  restore within ``EPICS_CA_MAX_SEARCH_PERIOD``, marks the first sample after it with the
  connection-loss fields, and stores nothing twice;
* an IOC that answers searches but never accepts the circuit (only its TCP port dropped):
  the PV is never reported connected, and connects once the port is open again.

An IOC killed and restarted, and a PV that changes type, are covered by test_engine_ca.py,
test_ca_ioc.py and test_mgmt_reports.py. Skipped, with the reason, without root and iptables
(failed under CI).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .helpers.wait import wait_for
from .http_server import running_server
from .ioc import IOC
from .requirements import require

DB = (
    'record(calc, "NF:CNT") { field(SCAN, ".1 second") field(CALC, "A+1") field(INPA, "NF:CNT") }\n'
)
CONN_TMO = 5.0
MAX_SEARCH_PERIOD = 60.0

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def dropped(rules: list[list[str]]) -> Iterator[None]:
    """iptables rules (INPUT on lo) that drop the matching packets while the block runs."""
    tag = f"pvarchiver-test-{uuid.uuid4().hex[:8]}"
    added: list[list[str]] = []
    try:
        for r in rules:
            spec = ["INPUT", "-i", "lo", *r, "-m", "comment", "--comment", tag, "-j", "DROP"]
            subprocess.run(["iptables", "-I", *spec], check=True, capture_output=True)
            added.append(spec)
        yield
    finally:
        for spec in added:
            subprocess.run(["iptables", "-D", *spec], capture_output=True)


def _iptables_usable() -> tuple[bool, str]:
    if os.name != "posix" or os.geteuid() != 0:
        return False, "iptables rules need root on Linux"
    if shutil.which("iptables") is None:
        return False, "iptables not installed (apt: iptables)"
    r = subprocess.run(["iptables", "-S", "INPUT"], capture_output=True, text=True)
    if r.returncode != 0:
        return False, f"iptables does not work here: {r.stderr.strip()}"
    return True, ""


def _status(base: str) -> dict[str, str]:
    r = httpx.get(base + "/mgmt/bpl/getPVStatus", params={"pv": "NF:CNT"}, timeout=10)
    return r.json()[0]


def _wait(pred, timeout: float, what: str) -> float:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    if not wait_for(pred, timeout, 0.2):
        raise AssertionError(f"not within {timeout:.0f} s: {what}")
    return time.monotonic() - t0


def _data(base: str) -> list[dict]:  # type: ignore[type-arg]
    now = time.time()
    r = httpx.get(
        base + "/retrieval/data/getData.json",
        params={
            "pv": "NF:CNT",
            "from": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3600)),
            "to": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 60)),
            "fetchLatestMetadata": "false",
        },
        timeout=30,
    )
    return r.json()[0]["data"]


@pytest.fixture
def ioc_and_server(tmp_path: Path) -> Iterator[tuple[IOC, str]]:
    ok, why = _iptables_usable()
    require(ok, why)
    with IOC(DB, tmp_path / "ioc") as ioc:
        env = {
            "EPICS_CA_ADDR_LIST": f"127.0.0.1:{ioc.port}",
            "EPICS_CA_SERVER_PORT": str(ioc.port),
            "EPICS_CA_REPEATER_PORT": str(ioc.repeater_port),
            "EPICS_CA_CONN_TMO": str(CONN_TMO),
            "EPICS_CA_MAX_SEARCH_PERIOD": str(MAX_SEARCH_PERIOD),
        }
        with running_server(tmp_path / "storage", env, ["--archive", "NF:CNT"]) as base:
            _wait(lambda: _status(base).get("status") == "Being archived", 60, "archived")
            yield ioc, base


def test_packets_dropped_for_60_s_then_restored(ioc_and_server: tuple[IOC, str]) -> None:
    ioc, base = ioc_and_server
    _wait(lambda: len(_data(base)) >= 10, 30, "samples before the outage")
    port = str(ioc.port)
    everything = [
        ["-p", "tcp", "--dport", port],
        ["-p", "tcp", "--sport", port],
        ["-p", "udp", "--dport", port],
        ["-p", "udp", "--dport", str(ioc.repeater_port)],
    ]
    with dropped(everything):
        t_block = time.time()
        lost_after = _wait(
            lambda: _status(base).get("connectionState") == "false", 4 * CONN_TMO + 10, "loss"
        )
        # the loss is reported, and the PV stays what it was: archived, not deleted or paused
        assert _status(base)["status"] == "Being archived"
        remaining = 60 - (time.time() - t_block)
        if remaining > 0:
            time.sleep(remaining)  # the outage lasts 60 s whatever the detection took
    t_restore = time.time()
    back_after = _wait(
        lambda: _status(base).get("connectionState") == "true",
        MAX_SEARCH_PERIOD + 15,
        "reconnect after the restore",
    )
    _wait(
        lambda: any(d["secs"] > t_restore + 1 for d in _data(base)),
        30,
        "new samples after the reconnect",
    )
    data = _data(base)
    ts = [(d["secs"], d["nanos"]) for d in data]
    assert ts == sorted(set(ts)), "a sample stored twice or out of order"
    vals = [d["val"] for d in data]
    assert all(b > a for a, b in itertools.pairwise(vals))
    after = [d for d in data if d["secs"] >= t_block]
    marked = [d for d in after if "cnxlostepsecs" in d.get("fields", {})]
    assert marked, "the first sample after the reconnect carries the connection-loss fields"
    f = marked[0]["fields"]
    assert int(f["cnxregainedepsecs"]) >= int(f["cnxlostepsecs"]) >= int(t_block) - 1
    print(
        f"\nloss noticed after {lost_after:.1f} s (EPICS_CA_CONN_TMO={CONN_TMO:g}), "
        f"reconnected {back_after:.1f} s after the restore "
        f"(bound EPICS_CA_MAX_SEARCH_PERIOD={MAX_SEARCH_PERIOD:g} s)"
    )


def test_ioc_answers_searches_but_never_connects(ioc_and_server: tuple[IOC, str]) -> None:
    ioc, base = ioc_and_server
    port = str(ioc.port)
    with dropped([["-p", "tcp", "--dport", port], ["-p", "tcp", "--sport", port]]):
        _wait(lambda: _status(base).get("connectionState") == "false", 4 * CONN_TMO + 10, "loss")
        # the searches keep being answered over UDP; the circuit never comes up: the PV must
        # be reported disconnected the whole time, not flap to connected
        for _ in range(int(2 * CONN_TMO / 0.5)):
            assert _status(base).get("connectionState") == "false"
            time.sleep(0.5)
    t_open = time.time()
    _wait(lambda: _status(base).get("connectionState") == "true", MAX_SEARCH_PERIOD + 15, "connect")
    _wait(lambda: any(d["secs"] > t_open + 1 for d in _data(base)), 30, "samples after connect")
