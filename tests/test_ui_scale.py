"""The UI with 100,000 registered PVs: it pages, and never asks the server for everything.

The registry is filled before the server starts (paused PVs, so no CA traffic), then the
browser checks the status of ``BIG:*``, pages through it and opens the paused-PV report.
What is asserted is the shape of the traffic (every getPVStatus call carries at most one
page of names, every glob expansion and report carries a ``limit``) and what the page
shows; the times are printed, not asserted (``benchmarks/bench_ui.py`` reports them).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import pytest

from .http_server import Server, running_server

CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is missing (pip install playwright)"
)

if TYPE_CHECKING:
    from playwright.sync_api import Request

N = 100_000
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "ui"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def fill_registry(root: Path, n: int) -> None:
    """n paused PVs written straight into the registry, as a restart would find them."""
    from pvarchiver.mgmt.registry import REGISTRY_FILENAME, Registry
    from pvarchiver.mgmt.typeinfo import PVTypeInfo
    from pvarchiver.storage import default_store_urls

    root.mkdir(parents=True, exist_ok=True)
    stores = list(default_store_urls(root))
    reg = Registry(root / REGISTRY_FILENAME)
    try:
        reg.put_typeinfos(
            PVTypeInfo(pvName=f"BIG:{i:06d}", paused=True, dataStores=stores) for i in range(n)
        )
    finally:
        reg.close()


@pytest.fixture(scope="module")
def big_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("uiscale") / "storage"
    fill_registry(root, N)
    with running_server(root) as base:
        yield base


@pytest.mark.slow
def test_home_and_reports_page_through_100k_pvs(big_server: Server) -> None:
    bpl: list[Request] = []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("scale-*.png"):
        old.unlink()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        try:
            pg = browser.new_page(viewport={"width": 1280, "height": 900})
            pg.set_default_timeout(60_000)
            pg.on("request", lambda r: bpl.append(r) if "/mgmt/bpl/" in r.url else None)
            pg.goto(f"{big_server}/mgmt/ui/index.html")
            pg.fill("#archstatpVNames", "BIG:*")
            t0 = time.perf_counter()
            pg.click("#archstatCheckStatus")
            rows = pg.locator("#archstatsTable tbody tr")
            rows.nth(99).wait_for()
            first_page = time.perf_counter() - t0
            assert rows.count() == 100
            assert rows.first.get_attribute("data-pv") == "BIG:000000"
            assert rows.first.get_attribute("data-status") == "Paused"
            assert "more than 10000" in pg.inner_text("#msg")
            assert "of 10000" in pg.inner_text("#archstatsdiv .pager")
            t0 = time.perf_counter()
            pg.click("#statusNext")
            pg.locator('#archstatsTable tr[data-pv="BIG:000100"]').wait_for()
            next_page = time.perf_counter() - t0
            pg.screenshot(path=str(ARTIFACTS / "scale-1-status-page2.png"), full_page=True)

            pg.goto(f"{big_server}/mgmt/ui/reports.html")
            t0 = time.perf_counter()
            pg.select_option("#reportSelect", label="Paused PVs")
            pg.locator("#reportTable").wait_for()
            report = time.perf_counter() - t0
            assert "1000 row(s)" in pg.inner_text("#reportInfo")
            assert pg.locator("#reportTable tbody tr").count() == 500  # drawn a page at a time
            pg.screenshot(path=str(ARTIFACTS / "scale-2-paused-report.png"))
        finally:
            browser.close()
    print(
        f"\n{N} PVs: first status page {first_page:.2f} s, next page {next_page:.2f} s, "
        f"paused report (limit 1000) {report:.2f} s"
    )

    seen = set()
    for r in bpl:
        action = urlsplit(r.url).path.rsplit("/", 1)[-1]
        query = parse_qs(urlsplit(r.url).query)
        seen.add(action)
        if action == "getPVStatus":
            names = json.loads(r.post_data or "[]") if r.method == "POST" else query["pv"]
            assert 0 < len(names) <= 100, (action, len(names))
        elif action == "getAllPVs":
            assert 0 < int(query["limit"][0]) <= 10000
        elif action.startswith("get") and action.endswith(("PVs", "Report")):
            assert "limit" in query, r.url
    assert {"getPVStatus", "getAllPVs", "getPausedPVsReport"} <= seen
