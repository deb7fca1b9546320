"""The quick chart with several PVs and live values, in a real browser (headless Chromium).

The harness of ``test_ui_browser.py``: a real softIoc of counters, the real ``pvarchiver
serve`` and Playwright driving Debian's Chromium.  Two archived counters with different units
are drawn as two traces with a legend and two y axes; the chart keeps extending with the
values of the PVWS websocket (``/pvws/pv``, the server's default 1 s throttle) and the page is
seen advancing; a PV added on the page (not archived: live values only) and one removed
change the traces, the URL and the server's subscriptions; a range that no longer ends now
closes the socket.  Screenshots go to ``test-artifacts/ui/chart-*.png``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from .helpers.mgmt import bpl, ca_env, wait_status
from .helpers.wait import wait_for
from .http_server import running_server
from .ioc import IOC
from .test_ui_browser import ARTIFACTS, CHROMIUM, LAUNCH_ARGS, UI, shot, sync_api

if TYPE_CHECKING:
    from playwright.sync_api import Page

ARCHIVED = {"CH:cnt1": "cts", "CH:cnt2": "mm"}
LIVE_ONLY = "CH:free"
DB = (
    'record(calc, "CH:cnt1") { field(SCAN, ".1 second") field(CALC, "A+1") field(INPA, "CH:cnt1")'
    ' field(EGU, "cts") }\n'
    'record(calc, "CH:cnt2") { field(SCAN, ".2 second") field(CALC, "A+2") field(INPA, "CH:cnt2")'
    ' field(EGU, "mm") }\n'
    'record(calc, "CH:free") { field(SCAN, ".5 second") field(CALC, "A+1") field(INPA, "CH:free")'
    ' field(EGU, "cts") }\n'
)


@pytest.fixture(scope="module")
def archiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("ui-chart")
    with IOC(DB, tmp / "ioc") as ioc, running_server(tmp / "storage", ca_env(ioc)) as base:
        names = list(ARCHIVED)
        r = bpl(base, "archivePV", "POST", json=[{"pv": n} for n in names])
        assert r.status_code == 200, r.text
        wait_status(base, names, "Being archived", timeout=60)
        # some history first: the engine's buffer is part of what retrieval answers
        assert wait_for(lambda: all(len(history(base, n)) >= 5 for n in names), timeout=30)
        yield base


@pytest.fixture(scope="module")
def ui(archiver: str) -> Iterator[UI]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("chart-*.png"):
        old.unlink()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        seen = UI(context.new_page())
        seen.page.set_default_timeout(30_000)
        seen.page.on("pageerror", lambda e: seen.errors.append(str(e)))
        seen.page.on(
            "request",
            lambda r: None if r.url.startswith(archiver) else seen.foreign.append(r.url),
        )
        try:
            yield seen
        finally:
            context.close()
            browser.close()


def history(base: str, pv: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{base}/retrieval/data/getData.json", params={"pv": pv}, timeout=10)
    return r.json()[0]["data"] if r.status_code == 200 else []


def sockets(base: str) -> list[dict[str, Any]]:
    """The server's open PVWS sockets (PVWS's /pvws/summary)."""
    return httpx.get(f"{base}/pvws/summary", timeout=10).json()["sockets"]


def traces(pg: Page) -> dict[str, dict[str, str]]:
    """PV -> the data attributes of its chip (samples fetched, live points taken, last time)."""
    rows = pg.locator("#chartPVs li").evaluate_all(
        "items => items.map(li => [li.dataset.pv, Object.assign({}, li.dataset)])"
    )
    return dict(rows)


def legend(pg: Page) -> list[str]:
    """The traces' labels in the chart's legend (without the x series, "Time")."""
    labels = pg.locator(".u-legend .u-series .u-label").all_inner_texts()
    return [t.strip() for t in labels[1:]]


def url_pvs(pg: Page) -> list[str]:
    return parse_qs(urlparse(pg.url).query).get("pv", [])


@pytest.mark.slow
def test_two_pvs_with_a_legend_extended_live(archiver: str, ui: UI) -> None:
    base = archiver
    pg = ui.page
    a, b = ARCHIVED
    pg.goto(f"{base}/mgmt/ui/chart.html?pv={a}&pv={b}")
    pg.wait_for_selector("#chartInfo[data-samples]")
    assert int(pg.get_attribute("#chartInfo", "data-samples")) >= 10
    got = traces(pg)
    assert list(got) == [a, b]
    assert all(int(got[n]["samples"]) >= 5 for n in (a, b)), got
    # one trace per PV, named with its unit in the legend; one y axis per unit, plus x
    labels = legend(pg)
    assert f"{a} (cts)" in labels and f"{b} (mm)" in labels, labels
    assert pg.locator("#chart .u-axis").count() == 3
    assert pg.locator("#chart canvas").count() >= 1

    # live: the socket subscribes to both, and each trace grows past its archived end
    pg.wait_for_selector('#chartLive[data-state="open"]')
    assert wait_for(lambda: [s["pvs"] for s in sockets(base)] == [2], timeout=20), sockets(base)
    start = {n: float(got[n]["last"]) for n in (a, b)}
    xmax = float(pg.get_attribute("#chart", "data-xmax") or 0)

    def advanced() -> bool:
        now = traces(pg)
        return all(
            int(now[n]["live"]) >= 3 and float(now[n]["last"]) > start[n] + 2 for n in (a, b)
        )

    assert wait_for(advanced, timeout=30, interval=0.2), (start, traces(pg))
    assert float(pg.get_attribute("#chart", "data-xmax") or 0) > xmax
    assert int(pg.get_attribute("#chartLive", "data-updates") or 0) >= 6
    # the chip shows the latest value: a counter that went on past what was fetched
    latest = pg.locator(f'#chartPVs li[data-pv="{a}"] .latest').inner_text()
    assert latest.startswith("= "), latest
    assert float(latest[2:]) > history(base, a)[0]["val"]
    shot(pg, "chart-01-two-pvs-live")

    # one axis per PV: the same two traces, each on its own axis
    pg.select_option("#chartAxes", "pv")
    assert pg.locator("#chart .u-axis").count() == 3
    pg.select_option("#chartAxes", "unit")

    # add a PV that is not archived: its trace comes from the live values alone
    pg.fill("#chartPV", LIVE_ONLY)
    pg.click("#chartAdd")
    pg.wait_for_selector(f'#chartPVs li[data-pv="{LIVE_ONLY}"]')
    assert wait_for(lambda: url_pvs(pg) == [a, b, LIVE_ONLY], timeout=10), pg.url
    assert wait_for(lambda: [s["pvs"] for s in sockets(base)] == [3], timeout=20), sockets(base)
    assert wait_for(
        lambda: int(traces(pg)[LIVE_ONLY].get("live", "0")) >= 2, timeout=30, interval=0.2
    ), traces(pg)
    # its unit comes with its first live value: it joins the "cts" axis, no third y axis
    assert wait_for(lambda: f"{LIVE_ONLY} (cts)" in legend(pg), timeout=10), legend(pg)
    assert len(legend(pg)) == 3
    assert pg.locator("#chart .u-axis").count() == 3
    assert "live values only" in pg.inner_text("#msg")
    shot(pg, "chart-02-added-live-only")

    # remove one: the trace, the URL and the subscription go
    pg.click(f'#chartPVs li[data-pv="{b}"] button.remove')
    assert wait_for(lambda: list(traces(pg)) == [a, LIVE_ONLY], timeout=10), traces(pg)
    assert wait_for(lambda: url_pvs(pg) == [a, LIVE_ONLY], timeout=10), pg.url
    assert wait_for(lambda: [s["pvs"] for s in sockets(base)] == [2], timeout=20), sockets(base)
    assert wait_for(lambda: len(legend(pg)) == 2, timeout=10), legend(pg)
    assert not any(label.startswith(b) for label in legend(pg))

    # a range that no longer ends now: the socket closes, the chart stays
    pg.select_option("#chartRange", "custom")
    pg.wait_for_selector('#chartLive[data-state="off"]')
    assert wait_for(lambda: sockets(base) == [], timeout=20), sockets(base)
    assert pg.locator("#chart canvas").count() >= 1
    shot(pg, "chart-03-custom-range-not-live")

    assert not ui.errors, ui.errors
    assert not ui.foreign, ui.foreign


@pytest.mark.slow
def test_bad_names_are_refused_in_the_page(archiver: str, ui: UI) -> None:
    pg = ui.page
    pg.goto(f"{archiver}/mgmt/ui/chart.html")
    pg.fill("#chartPV", "CH:cnt1 name?")
    pg.click("#chartAdd")
    pg.wait_for_selector("#msg.error")
    assert "Not a valid PV name: name?" in pg.inner_text("#msg")
    assert pg.locator("#chartPVs li").count() == 0
    assert not ui.errors, ui.errors
