"""Talking to a running ``pvarchiver serve`` about an IOC: the CA environment that points the
server at a test IOC, and the management BPL calls the workflow tests share."""

from __future__ import annotations

import httpx

from ..ioc import IOC
from .wait import wait_for


def ioc_env(ioc: IOC) -> dict[str, str]:
    """The environment that points a server's CA client at ``ioc`` only."""
    return {
        "EPICS_CA_ADDR_LIST": f"127.0.0.1:{ioc.port}",
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
        "EPICS_CA_SERVER_PORT": str(ioc.port),
        "EPICS_CA_REPEATER_PORT": str(ioc.repeater_port),
    }


def ca_env(ioc: IOC, window: float = 1.0, **extra: str) -> dict[str, str]:
    """:func:`ioc_env` with a short initial-sampling window (``window`` s) and ``extra``."""
    return {**ioc_env(ioc), "PVARCHIVER_INITIAL_SAMPLING_SECONDS": str(window), **extra}


def bpl(base: str, action: str, method: str = "GET", **kw: object) -> httpx.Response:
    return httpx.request(method, f"{base}/mgmt/bpl/{action}", timeout=30, **kw)  # type: ignore[arg-type]


def statuses(base: str, names: list[str]) -> dict[str, str]:
    r = bpl(base, "getPVStatus", "POST", json=names)
    assert r.status_code == 200, r.text
    return {row["pvName"]: row["status"] for row in r.json()}


def wait_status(base: str, names: list[str], want: str, timeout: float = 30) -> dict[str, str]:
    """Until every PV of ``names`` has the status ``want`` (polled 5 times a second)."""
    got: dict[str, str] = {}

    def done() -> bool:
        nonlocal got
        got = statuses(base, names)
        return all(got.get(n) == want for n in names)

    if not wait_for(done, timeout, 0.2):
        raise AssertionError(f"wanted {want} for {names}, got {got}")
    return got
