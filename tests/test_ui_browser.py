"""The acceptance procedure of issue #5, in a real browser (headless Debian Chromium).

A real softIoc and the real ``pvarchiver serve`` process; Playwright drives the pages as a
user would: type names, press Archive, watch ``Initial sampling`` turn into ``Being
archived``, find ``.pb`` files under ``<storage>/sts``, pause, resume, delete, open the
details, reports, metrics, storage and chart pages.  Each step leaves a screenshot in
``test-artifacts/ui/`` (repo root) for a human to look at.

Skipped, with the reason, only when Playwright or ``/usr/bin/chromium`` is missing; CI
installs both (``apt-get install chromium``, ``pip install playwright``; never
``playwright install``, which downloads browsers).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from .helpers.wait import wait_for
from .http_server import Server, running_server
from .ioc import IOC

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is missing (pip install playwright)"
)

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "ui"
PVS = ["UI:calc1", "UI:calc2", "UI:ramp"]
SCAN_PV = "UI:slow"
DB = "".join(
    f'record(calc, "{pv}") {{ field(SCAN, "{scan}") field(CALC, "A+1") field(INPA, "{pv}")'
    f' field(EGU, "cts") }}\n'
    for pv, scan in [*((pv, ".1 second") for pv in PVS), (SCAN_PV, "1 second")]
)
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def archiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    tmp = tmp_path_factory.mktemp("ui")
    root = tmp / "storage"
    with IOC(DB, tmp / "ioc") as ioc:
        env = {
            "EPICS_CA_ADDR_LIST": f"127.0.0.1:{ioc.port}",
            "EPICS_CA_AUTO_ADDR_LIST": "NO",
            "EPICS_CA_SERVER_PORT": str(ioc.port),
            "EPICS_CA_REPEATER_PORT": str(ioc.repeater_port),
        }
        with running_server(root, env) as base:
            yield base, root


@dataclass
class UI:
    """The browser page plus what it saw: script errors and requests to other hosts."""

    page: Page
    errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def ui(archiver: tuple[Server, Path]) -> Iterator[UI]:
    # this module's screenshots from an earlier run go (test_ui_scale.py owns scale-*)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        if not old.name.startswith("scale-"):
            old.unlink()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        seen = UI(context.new_page())
        seen.page.set_default_timeout(30_000)
        base = str(archiver[0])
        seen.page.on("pageerror", lambda e: seen.errors.append(str(e)))
        seen.page.on(
            "request", lambda r: None if r.url.startswith(base) else seen.foreign.append(r.url)
        )
        try:
            yield seen
        finally:
            context.close()
            browser.close()


def shot(pg: Page, name: str) -> None:
    pg.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def statuses(pg: Page) -> dict[str, str]:
    """PV -> status as the table shows now (one read: the table is redrawn as it refreshes)."""
    pairs = pg.locator("#archstatsTable tbody tr").evaluate_all(
        "rows => rows.map(r => [r.dataset.pv, r.dataset.status])"
    )
    return dict(pairs)


def wait_statuses(pg: Page, names: list[str], status: str, timeout: float = 60) -> None:
    """Until the table holds exactly ``names``, all showing ``status`` (it refreshes itself)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = statuses(pg)
        if set(got) == set(names) and all(got[n] == status for n in names):
            return
        pg.wait_for_timeout(200)
    raise AssertionError(f"wanted {status!r} for {names}, the page shows {statuses(pg)}")


def type_names(pg: Page, names: list[str]) -> None:
    pg.fill("#archstatpVNames", "\n".join(names))


def sts_files(root: Path, pv: str) -> list[Path]:
    folder = root / "sts" / Path(*pv.split(":")[:-1])
    return sorted(folder.glob(pv.split(":")[-1] + ":*.pb")) if folder.is_dir() else []


@pytest.mark.slow
def test_acceptance_procedure(archiver: tuple[Server, Path], ui: UI) -> None:
    base, root = archiver
    pg = ui.page
    pg.goto(f"{base}/mgmt/ui/index.html")
    assert "please type in some PV names here" in pg.inner_text("main")
    shot(pg, "01-home")

    type_names(pg, PVS)
    shot(pg, "02-names-typed")
    pg.click("#archstatArchive")
    # the first status after the request: the workflow is measuring the PVs
    pg.wait_for_selector('#archstatsTable tr[data-status="Initial sampling"]')
    assert not pg.locator("#refreshState").is_hidden()
    shot(pg, "03-initial-sampling")
    wait_statuses(pg, PVS, "Being archived")
    # everything archived: the page stops refreshing itself
    assert pg.locator("#refreshState").is_hidden()
    row = pg.locator(f'#archstatsTable tr[data-pv="{PVS[0]}"]')
    assert row.locator('td[data-col="connectionState"]').inner_text() == "Yes"
    assert row.locator('td[data-col="lastEvent"]').inner_text().strip()
    shot(pg, "04-being-archived")

    # data on disk: the engine's write period (10 s) passes and .pb files appear in the STS
    assert wait_for(lambda: all(sts_files(root, pv) for pv in PVS), timeout=60), list(
        (root / "sts").rglob("*")
    )

    # globs: Check Status and Lookup expand them on the server (getAllPVs)
    type_names(pg, ["UI:calc*"])
    pg.click("#archstatCheckStatus")
    wait_statuses(pg, ["UI:calc1", "UI:calc2"], "Being archived")
    shot(pg, "05-check-status-glob")
    pg.click("#archstatLookup")
    # (no wait_for_function: the pages' CSP forbids eval, which it needs)
    sync_api.expect(pg.locator("#archstatpVNames")).to_have_value(re.compile("UI:calc2"))
    assert pg.input_value("#archstatpVNames").split() == ["UI:calc1", "UI:calc2"]
    shot(pg, "06-lookup")

    # pause and resume through the buttons
    type_names(pg, PVS)
    pg.click("#archstatPause")
    wait_statuses(pg, PVS, "Paused")
    shot(pg, "07-paused")
    pg.click("#archstatResume")
    wait_statuses(pg, PVS, "Being archived")
    shot(pg, "08-resumed")

    # details page, from the status table's link
    pg.click(f'#archstatsTable tr[data-pv="{PVS[0]}"] td[data-col="details"] a')
    pg.wait_for_selector("#pvDetailsTable tbody tr")
    names = pg.locator('#pvDetailsTable td[data-col="name"]').all_inner_texts()
    assert len(names) >= 10, names
    assert any("Sampling method" in n for n in names), names
    assert pg.locator("#storesTable tbody tr").count() >= 3
    shot(pg, "09-pv-details")
    pg.click("#pvPause")
    pg.wait_for_selector("#msg.ok")
    pg.click("#pvResume")
    pg.wait_for_selector("#msg.ok")
    r = httpx.get(base + "/mgmt/bpl/getPVStatus", params={"pv": PVS[0]}, timeout=10)
    assert r.json()[0]["status"] in ("Being archived", "Appliance assigned")

    # quick chart from the details page's link: the chart draws the archived counter
    pg.click("#chartLink")
    pg.wait_for_selector("#chartInfo[data-samples]")
    assert int(pg.get_attribute("#chartInfo", "data-samples")) >= 10
    assert pg.locator("#chart canvas").count() >= 1
    shot(pg, "10-chart")

    # archive with a chosen method and period, through the dialog
    pg.goto(f"{base}/mgmt/ui/index.html")
    type_names(pg, [SCAN_PV])
    pg.click("#archstatArchiveWithPeriod")
    pg.wait_for_selector("#samplingDialog[open]")
    assert pg.locator("#policySelect option").count() >= 2
    pg.check('#samplingDialog input[value="SCAN"]')
    pg.fill("#samplingPeriodInput", "2")
    shot(pg, "11-archive-dialog")
    pg.click("#samplingOk")
    wait_statuses(pg, [SCAN_PV], "Being archived")
    info = httpx.get(base + "/mgmt/bpl/getPVTypeInfo", params={"pv": SCAN_PV}, timeout=10).json()
    assert info["samplingMethod"] == "SCAN"
    assert float(info["samplingPeriod"]) == 2.0
    shot(pg, "12-archived-with-scan")

    # delete, with the data, through the dialog
    victim = PVS[2]
    assert sts_files(root, victim)
    type_names(pg, [victim])
    pg.click("#archstatDelete")
    pg.wait_for_selector("#deleteDialog[open]")
    assert "Are you certain" in pg.inner_text("#deleteDialog")
    pg.check("#deleteDataCheckbox")
    shot(pg, "13-delete-dialog")
    pg.click("#deleteOk")
    wait_statuses(pg, [victim], "Not being archived")
    assert wait_for(lambda: not sts_files(root, victim), timeout=20)
    shot(pg, "14-deleted")

    assert not ui.errors, ui.errors
    assert not ui.foreign, ui.foreign


@pytest.mark.slow
def test_bad_names_and_abort_of_a_missing_pv(archiver: tuple[Server, Path], ui: UI) -> None:
    base, _root = archiver
    pg = ui.page
    pg.goto(f"{base}/mgmt/ui/index.html")
    asked: list[str] = []
    pg.on("request", lambda r: asked.append(r.url) if "/mgmt/bpl/" in r.url else None)
    type_names(pg, ["UI:calc1", "not a name"])
    pg.click("#archstatArchive")
    pg.wait_for_selector("#msg.error")
    assert "not valid PV names: not a name" in pg.inner_text("#msg")
    type_names(pg, ["UI:calc*"])
    pg.click("#archstatArchive")
    pg.wait_for_selector("#msg.error")
    assert "not patterns" in pg.inner_text("#msg")
    assert not asked  # refused in the browser, nothing sent

    ghost = "UI:nosuchpv"
    type_names(pg, [ghost])
    pg.click("#archstatArchive")
    wait_statuses(pg, [ghost], "Initial sampling")
    pg.goto(f"{base}/mgmt/ui/reports.html?report=getNeverConnectedPVs")
    pg.wait_for_selector("#reportTable")
    assert ghost in pg.inner_text("#reportTable")
    shot(pg, "15-report-never-connected")
    pg.goto(f"{base}/mgmt/ui/index.html?pv={ghost}")
    wait_statuses(pg, [ghost], "Initial sampling")
    pg.click(f'#archstatsTable tr[data-pv="{ghost}"] button.abort')
    wait_statuses(pg, [ghost], "Not being archived")
    assert "Aborted request for archiving PV" in pg.inner_text("#msg")
    shot(pg, "16-aborted")
    # Delete on a request still in the workflow aborts it (nothing is stored yet)
    type_names(pg, [ghost])
    pg.click("#archstatArchive")
    wait_statuses(pg, [ghost], "Initial sampling")
    pg.click("#archstatDelete")
    pg.click("#deleteOk")
    wait_statuses(pg, [ghost], "Not being archived")
    assert "Aborted 1 request" in pg.inner_text("#msg")
    assert not ui.errors, ui.errors


def offered(base: str, action: str) -> bool:
    """Whether the server has this BPL action (for one it lacks it answers a 4xx saying
    '"<action>" is not a valid API method.', as the AA does)."""
    r = httpx.get(f"{base}/mgmt/bpl/{action}", params={"limit": "1"}, timeout=10)
    return not (400 <= r.status_code < 500 and "not a valid API method" in r.text)


@pytest.mark.slow
def test_reports_page(archiver: tuple[Server, Path], ui: UI) -> None:
    base, _root = archiver
    pg = ui.page
    pg.goto(f"{base}/mgmt/ui/index.html")
    type_names(pg, ["UI:calc1"])
    pg.click("#archstatArchive")
    wait_statuses(pg, ["UI:calc1"], "Being archived")
    pg.click("#archstatPause")
    wait_statuses(pg, ["UI:calc1"], "Paused")

    pg.goto(f"{base}/mgmt/ui/reports.html")
    options = pg.locator("#reportSelect option")
    actions = {options.nth(i).get_attribute("data-action") for i in range(options.count())} - {None}
    assert len(actions) == 16, actions
    pg.select_option("#reportSelect", label="Paused PVs")
    pg.wait_for_selector("#reportTable")
    assert "UI:calc1" in pg.inner_text("#reportTable")
    shot(pg, "20-report-paused")
    failed = []
    for i in range(options.count()):
        action = options.nth(i).get_attribute("data-action")
        if not action:
            continue
        assert offered(base, action), f"the server has no {action}"
        pg.select_option("#reportSelect", index=i)
        sync_api.expect(pg.locator("#reportInfo")).not_to_have_text(re.compile("^Running"))
        error = pg.inner_text("#msg") if pg.locator("#msg.error").is_visible() else ""
        if error:
            failed.append(f"{action}: {error}")
        else:
            assert pg.locator("#reportTable, #reportEmpty").count() == 1, action
    assert not failed, failed
    assert not ui.errors, ui.errors


@pytest.mark.slow
def test_metrics_page(archiver: tuple[Server, Path], ui: UI) -> None:
    base, _root = archiver
    pg = ui.page
    pg.goto(f"{base}/mgmt/ui/metrics.html")
    pg.wait_for_selector("#metricsTable tbody tr")
    pg.wait_for_selector("#metricsDetailTable tbody tr")
    shot(pg, "21-metrics")
    assert not ui.errors, ui.errors


@pytest.mark.slow
def test_storage_page(archiver: tuple[Server, Path], ui: UI) -> None:
    base, _root = archiver
    pg = ui.page
    pg.goto(f"{base}/mgmt/ui/storage.html")
    pg.wait_for_selector("#storageTable tbody tr")
    stores = pg.locator("#storageTable tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.store)"
    )
    assert {"STS", "MTS", "LTS"} <= set(stores), stores
    shot(pg, "22-storage")
    pg.click("#nav a:has-text('Home')")
    pg.wait_for_selector("#archstatpVNames")
    assert not ui.errors, ui.errors


@pytest.mark.slow
def test_pv_details_actions(archiver: tuple[Server, Path], ui: UI) -> None:
    base, root = archiver
    pg = ui.page
    pv, newname = "UI:calc2", "UI:renamed"
    pg.goto(f"{base}/mgmt/ui/index.html")
    type_names(pg, [pv])
    pg.click("#archstatArchive")
    wait_statuses(pg, [pv], "Being archived")
    pg.goto(f"{base}/mgmt/ui/pvdetails.html?pv={pv}")
    pg.wait_for_selector("#pvDetailsTable tbody tr")

    pg.click("#pvChangeParams")
    pg.wait_for_selector("#paramsDialog[open]")
    pg.check('#paramsDialog input[value="SCAN"]')
    pg.fill('#paramsDialog input[name="samplingperiod"]', "5")
    shot(pg, "40-change-params-dialog")
    pg.click('#paramsDialog button[type="submit"]')
    pg.wait_for_selector("#msg.ok")
    info = httpx.get(base + "/mgmt/bpl/getPVTypeInfo", params={"pv": pv}, timeout=10).json()
    assert (info["samplingMethod"], float(info["samplingPeriod"])) == ("SCAN", 5.0)

    # the seed's procedure: .pb files in the STS, "and later mts/lts": the consolidate
    # button moves them on at once instead of after the ETL's hours
    assert wait_for(lambda: sts_files(root, pv), timeout=60)
    pg.click("#pvPause")
    sync_api.expect(pg.locator("#msg.ok")).to_contain_text("paused")
    pg.click("#pvConsolidate")
    pg.wait_for_selector("#consolidateDialog[open]")
    assert pg.locator("#consolidateStore option").all_inner_texts() == ["STS", "MTS", "LTS"]
    pg.evaluate("AA.message('')")  # so the wait below sees this action's answer
    pg.click('#consolidateDialog button[type="submit"]')
    pg.wait_for_selector("#msg.ok:visible, #msg.error:visible")
    assert pg.locator("#msg.ok").is_visible(), pg.inner_text("#msg")
    lts = root / "lts" / "UI"
    assert sorted(lts.glob("calc2:*.pb")), list((root / "lts").rglob("*"))
    assert not sts_files(root, pv)
    shot(pg, "42-consolidated-to-lts")

    pg.click("#pvRename")
    pg.wait_for_selector("#renameDialog[open]")
    pg.fill("#renameInput", newname)
    pg.click('#renameDialog button[type="submit"]')
    pg.wait_for_url(f"**/pvdetails.html?pv={newname.replace(':', '%3A')}")
    pg.wait_for_selector("#pvDetailsTable tbody tr")
    assert newname in pg.inner_text("#pvDetailsTable")
    shot(pg, "41-renamed")
    r = httpx.get(base + "/mgmt/bpl/getPVStatus", params={"pv": newname}, timeout=10)
    assert r.json()[0]["status"] == "Paused"
    assert not ui.errors, ui.errors


@pytest.mark.slow
def test_failing_writes_are_red_with_the_reason(tmp_path: Path, ui: UI) -> None:
    """Issue 15, item 3: a PV whose samples do not reach its store is red on the home page
    with the reason, the banner on every page says the appliance is unhealthy, the storage
    and details pages mark the store and the rows, and all of it clears when the store
    takes writes again. A server of its own: its STS is made to fail (a file where the
    PV's folder must go)."""
    bad, good = "UIF:calc", "UIOK:calc"
    db = "".join(
        f'record(calc, "{pv}") {{ field(SCAN, ".1 second") field(CALC, "A+1") '
        f'field(INPA, "{pv}") }}\n'
        for pv in (bad, good)
    )
    root = tmp_path / "storage"
    blocker = root / "sts" / "UIF"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the folder of UIF:calc must go: its writes fail")
    browser = ui.page.context.browser
    assert browser is not None
    with IOC(db, tmp_path / "ioc") as ioc:
        env = {
            "EPICS_CA_ADDR_LIST": f"127.0.0.1:{ioc.port}",
            "EPICS_CA_AUTO_ADDR_LIST": "NO",
            "EPICS_CA_SERVER_PORT": str(ioc.port),
            "EPICS_CA_REPEATER_PORT": str(ioc.repeater_port),
            "PVARCHIVER_SECONDS_TO_BUFFER": "1",
            "PVARCHIVER_UNHEALTHY_AFTER_SECONDS": "3",
            "PVARCHIVER_LOW_SPACE_PERCENT": "0",
            "PVARCHIVER_LOW_SPACE_BYTES": "0",
        }
        with running_server(root, env, ["--initial-sampling", "1"]) as base:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            pg = context.new_page()
            pg.set_default_timeout(30_000)
            errors: list[str] = []
            foreign: list[str] = []
            pg.on("pageerror", lambda e: errors.append(str(e)))
            pg.on("request", lambda r: None if r.url.startswith(base) else foreign.append(r.url))

            def server_says(unhealthy: bool) -> bool:
                st = httpx.get(base + "/mgmt/bpl/getPVStatus", params={"pv": bad}).json()[0]
                h = httpx.get(base + "/mgmt/bpl/getApplianceHealth")
                return ("archiveWriteError" in st) is unhealthy and (
                    h.status_code == 503
                ) is unhealthy

            try:
                pg.goto(f"{base}/mgmt/ui/index.html")
                type_names(pg, [bad, good])
                pg.click("#archstatArchive")
                wait_statuses(pg, [bad, good], "Being archived")
                assert wait_for(lambda: server_says(unhealthy=True), 60, 0.2)
                pg.reload()  # the banner is drawn when a page loads (and every 15 s)
                type_names(pg, [bad, good])
                pg.click("#archstatCheckStatus")
                row = pg.locator(f'#archstatsTable tr[data-pv="{bad}"]')
                sync_api.expect(row).to_have_attribute("data-write-error", "true")
                # the AA's status string stays; the reason is added, in red
                assert row.get_attribute("data-status") == "Being archived"
                assert "failing" in (row.get_attribute("class") or "")
                reason = row.locator("td[data-col=status] .reason").inner_text()
                assert reason.startswith("Writes to the STS failing since ") and "UIF" in reason
                cell = row.locator("td[data-col=status]")
                red = cell.evaluate("td => getComputedStyle(td).color")
                assert red == "rgb(163, 38, 28)", red
                ok_row = pg.locator(f'#archstatsTable tr[data-pv="{good}"]')
                assert ok_row.get_attribute("data-write-error") is None
                banner = pg.locator("#healthBanner")
                sync_api.expect(banner).to_be_visible()
                assert banner.get_attribute("data-status") == "unhealthy"
                assert "store STS: writes failing" in banner.locator(".problem").inner_text()
                shot(pg, "50-write-failing")
                pg.goto(f"{base}/mgmt/ui/storage.html")
                sts_row = pg.locator('#storageTable tr[data-store="STS"]')
                sync_api.expect(sts_row).to_have_class("failing")
                sync_api.expect(pg.locator("#healthBanner")).to_be_visible()
                shot(pg, "51-storage-write-failing")
                pg.goto(f"{base}/mgmt/ui/pvdetails.html?pv={bad}")
                failing_rows = pg.locator("#pvDetailsTable tr.failing")
                sync_api.expect(failing_rows).to_have_count(2)
                assert "Writes to the STS failing since" in failing_rows.first.inner_text()

                # the store takes writes again: the page clears by itself (it keeps
                # refreshing while a row is red), the banner goes at the next load
                blocker.unlink()
                pg.goto(f"{base}/mgmt/ui/index.html")
                type_names(pg, [bad, good])
                pg.click("#archstatCheckStatus")
                sync_api.expect(pg.locator("#archstatsTable tr.failing")).to_have_count(
                    0, timeout=60_000
                )
                shot(pg, "52-write-recovered")
                assert wait_for(lambda: server_says(unhealthy=False), 30, 0.2)
                pg.reload()
                sync_api.expect(pg.locator("#healthBanner")).to_be_hidden()
                assert not errors, errors
                assert not foreign, foreign
            finally:
                context.close()
