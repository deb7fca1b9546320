"""A store whose writes fail, through the real ``pvarchiver serve`` and a real IOC (issue 15,
item 3): getPVStatus and getPVDetails say so (the AA's fields unchanged), ``/metrics``
counts the failing store, getApplianceHealth and the container's healthcheck script turn
unhealthy after the configured time, and all of it clears by itself when the store takes
writes again, with every value the IOC sent meanwhile in the ``.pb`` file.

Writes are made to fail without root: a file where the PV's folder must go. The disk that
fills and frees is in test_disk_full.py (needs a tmpfs)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from .helpers.mgmt import ioc_env as ca_env
from .helpers.serve_checks import assert_contiguous, metric, stored_values
from .helpers.wait import wait_for
from .http_server import running_server
from .ioc import IOC

ROOT = Path(__file__).resolve().parents[1]
BAD, GOOD = "HF:count", "OK:count"
DB = "".join(
    f'record(calc, "{pv}") {{ field(SCAN, ".1 second") field(CALC, "A+1") field(INPA, "{pv}") }}\n'
    for pv in (BAD, GOOD)
)
#: the AA's report time, as getPVStatus' lastEvent: ``Jun/01/2025 12:00:00 +00:00``
REPORT_TIME = r"[A-Z][a-z]{2}/\d{2}/\d{4} \d{2}:\d{2}:\d{2} [+-]\d{2}:\d{2}"
AA_STATUS_KEYS = {
    "pvName",
    "pvNameOnly",
    "appliance",
    "status",
    "isMonitored",
    "samplingPeriod",
    "connectionState",
    "lastEvent",
    "lastRotateLogs",
    "connectionFirstEstablished",
    "connectionLastRestablished",
    "connectionLossRegainCount",
}
OURS = {"archiveWriteError", "archiveWriteErrorSince", "archiveWriteErrorStore"}


def statuses(base: str) -> dict[str, dict[str, str]]:
    r = httpx.get(base + "/mgmt/bpl/getPVStatus", params={"pv": f"{BAD},{GOOD}"}, timeout=10)
    assert r.status_code == 200, r.text
    return {row["pvName"]: row for row in r.json()}


def healthcheck(base: str) -> subprocess.CompletedProcess[str]:
    port = base.rsplit(":", 1)[1]
    return subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "healthcheck.py")],
        env={"PVARCHIVER_PORT": port},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_failing_store_is_reported_and_clears_by_itself(tmp_path: Path) -> None:
    root = tmp_path / "storage"
    blocker = root / "sts" / "HF"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the folder of HF:count must go: its writes fail")
    with IOC(DB, tmp_path / "ioc") as ioc:
        env = {
            **ca_env(ioc),
            "PVARCHIVER_SECONDS_TO_BUFFER": "1",
            "PVARCHIVER_UNHEALTHY_AFTER_SECONDS": "4",
            # the test machine's own disk must not add low-space warnings here
            "PVARCHIVER_LOW_SPACE_PERCENT": "0",
            "PVARCHIVER_LOW_SPACE_BYTES": "0",
        }
        with running_server(root, env, ["--initial-sampling", "1"]) as base:
            r = httpx.get(base + "/mgmt/bpl/archivePV", params={"pv": f"{BAD},{GOOD}"})
            assert r.status_code == 200, r.text
            assert wait_for(lambda: "archiveWriteError" in statuses(base).get(BAD, {}), 60, 0.2)
            reported = time.time()
            st = statuses(base)
            bad, good = st[BAD], st[GOOD]
            # the AA's fields and status string as they are, ours added
            assert bad["status"] == good["status"] == "Being archived"
            assert set(bad) == AA_STATUS_KEYS | OURS and set(good) == AA_STATUS_KEYS
            assert bad["archiveWriteErrorStore"] == "STS" and bad["archiveWriteError"]
            assert re.fullmatch(REPORT_TIME, bad["archiveWriteErrorSince"])
            rows = httpx.get(base + "/mgmt/bpl/getPVDetails", params={"pv": BAD}).json()
            details = {row["name"]: row["value"] for row in rows}
            assert re.fullmatch(REPORT_TIME, details["Writes to the STS failing since"])
            assert details["Writes to the STS failing because"] == bad["archiveWriteError"]
            assert int(details["Write errors"]) >= 2
            assert metric(base, "pvarchiver_stores_write_failing") == "1"
            assert metric(base, 'pvarchiver_store_write_failing{store="STS"}') == "1"
            assert metric(base, 'pvarchiver_store_write_failing_pvs{store="STS"}') == "1"

            # unhealthy once the store has failed for longer than the setting (4 s here)
            def health() -> httpx.Response:
                return httpx.get(base + "/mgmt/bpl/getApplianceHealth", timeout=10)

            assert wait_for(lambda: health().status_code == 503, 30, 0.2)
            body = health().json()
            assert body["status"] == "unhealthy" and body["unhealthyAfterSeconds"] == "4"
            assert body["problems"][0].startswith("store STS: writes failing for ")
            assert f"({BAD})" in body["problems"][0]
            sts_row = next(s for s in body["stores"] if s["name"] == "STS")
            assert sts_row["writeFailing"] == "true" and sts_row["writeFailingPVs"] == "1"
            assert {s["name"] for s in body["stores"]} == {"STS", "MTS", "LTS", "journal"}
            assert metric(base, "pvarchiver_unhealthy") == "1"
            check = healthcheck(base)
            assert check.returncode == 1, check
            assert "HTTP 503" in check.stderr and "store STS: writes failing" in check.stderr
            rows = httpx.get(base + "/mgmt/bpl/getStorageMetrics").json()
            assert next(s for s in rows if s["name"] == "STS")["writeFailing"] == "true"
            # bad input is a 4xx, never a 500
            for params in ({"pv": BAD}, {"x": "1"}):
                r = httpx.get(base + "/mgmt/bpl/getApplianceHealth", params=params)
                assert r.status_code == 400 and "validation" in r.json(), r.text
            r = httpx.post(base + "/mgmt/bpl/getApplianceHealth", content=b"\xff{not json")
            assert r.status_code == 503, r.text  # the body is not read: still the verdict

            # the store takes writes again: everything clears by itself
            blocker.unlink()
            freed = time.time()
            assert wait_for(lambda: "archiveWriteError" not in statuses(base)[BAD], 30, 0.2)
            assert wait_for(lambda: health().status_code == 200, 30, 0.2)
            assert health().json()["status"] == "ok" and health().json()["problems"] == []
            assert metric(base, "pvarchiver_stores_write_failing") == "0"
            assert metric(base, "pvarchiver_unhealthy") == "0"
            assert healthcheck(base).returncode == 0
            assert "Writes to the STS failing since" not in {
                row["name"]
                for row in httpx.get(base + "/mgmt/bpl/getPVDetails", params={"pv": BAD}).json()
            }
            # every value the IOC sent while the store failed is in the .pb file now
            assert wait_for(lambda: stored_values(root, BAD)[-1][0] >= freed + 2, 30, 0.2)
            values = stored_values(root, BAD)
            assert values[0][0] < reported  # from before the failure was reported...
            assert_contiguous(values)  # ...to after it ended, without a gap
        log = next(tmp_path.glob("server-*.log")).read_text()
        assert "store STS: writes failing" in log and "store STS: writes succeed again" in log
