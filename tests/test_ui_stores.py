"""The UI's parts of issue 16 (item 7) in a real browser (headless Debian Chromium) against
the real ``pvarchiver serve`` and a real softIoc: a PV's stores and retention on its details
page, Change store / Modify store URL / Change type / Consolidate with a date, the Named
flags page, and the new reports (waveforms, meta gets, time span, slow-changing drops).

Data is written into the store folders before the server starts (as tests/test_mgmt_stores.py
does): in the LTS for the PV whose store is changed, and in the STS at future times for the
PV consolidated up to a date, so the server's own ETL (which only moves partitions that are
over) cannot move any of it while the test runs. Every error the server answers must reach
the page word for word: the tests compare the page's message with the server's own answer.

Skipped, with the reason, only when Playwright or ``/usr/bin/chromium`` is missing (the
harness of tests/test_ui_browser.py). Screenshots go to ``test-artifacts/ui/stores-*.png``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pvarchiver.pb import PayloadType, Sample
from pvarchiver.storage.batch import append_samples
from pvarchiver.storage.store import PlainPBStore
from pvarchiver.storage.url import default_store_urls, parse_store_url

from .helpers.mgmt import bpl, ca_env, wait_status
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
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
D = PayloadType.SCALAR_DOUBLE
DAY = 86400
NOW = int(time.time())

SHORT = "UIS:three_days"  # STS, MTS hold=3, blackhole: the default policies' 3DaysMTSOnly
LONG = "UIS:default"  # no dataStores: the default STS, MTS, LTS
REDUCED = "UIS:reduced"  # an LTS that reduces and keeps a post-processed cache
MOVE = "UIS:move"  # data in the LTS, moved by Change store
CONS = "UIS:cons"  # data in the STS at NOW+10 d and NOW+20 d, consolidated up to NOW+15 d
TYPED = "UIS:typed"  # Change type: 1.5, 2.5, ... in its LTS
WAVE = "UIS:wave"  # a waveform the engine archives: getArchivedWaveforms
GHOST = "UIS:ghost"  # never connects: stays in its initial sampling (getMetaGets)
DB = f'record(waveform, "{WAVE}") {{ field(FTVL, "DOUBLE") field(NELM, "16") }}\n'

STS = (
    "pb://localhost?name=STS&rootFolder=${ARCHAPPL_SHORT_TERM_FOLDER}"
    "&partitionGranularity=PARTITION_HOUR"
)
MTS3 = (
    "pb://localhost?name=MTS&rootFolder=${ARCHAPPL_MEDIUM_TERM_FOLDER}"
    "&partitionGranularity=PARTITION_DAY&hold=3&gather=1"
)
BLACKHOLE = "blackhole://localhost?name=BlackHole"
MTS = (
    "pb://localhost?name=MTS&rootFolder=${ARCHAPPL_MEDIUM_TERM_FOLDER}"
    "&partitionGranularity=PARTITION_DAY&hold=2&gather=1"
)
LTS_REDUCED = (
    "pb://localhost?name=LTS&rootFolder=${ARCHAPPL_LONG_TERM_FOLDER}"
    "&partitionGranularity=PARTITION_YEAR&reducedata=firstSample_3600&pp=mean_600"
)
#: one sample a day for 30 days, ending 40 days ago (in the LTS of MOVE)
OLD_TIMES = range(NOW - 70 * DAY, NOW - 40 * DAY, DAY)
OLD = [Sample(t, 0, float(i)) for i, t in enumerate(OLD_TIMES)]
#: two samples in the future: ETL leaves them alone, a consolidation "as at" a date does not
FUTURE = [Sample(NOW + 10 * DAY, 0, 1.0), Sample(NOW + 20 * DAY, 0, 2.0)]


def default_stores(storage: Path) -> dict[str, PlainPBStore]:
    return {
        s.name: PlainPBStore(s) for s in (parse_store_url(u) for u in default_store_urls(storage))
    }


def put_typeinfo(base: str, pv: str, stores: list[str] | None = None) -> None:
    ti: dict[str, object] = {"pvName": pv, "DBRType": "DBR_SCALAR_DOUBLE", "paused": "true"}
    if stores is not None:
        ti["dataStores"] = stores
    r = bpl(base, "putPVTypeInfo", "POST", params={"pv": pv, "createnew": "true"}, json=ti)
    assert r.status_code == 200, r.text


@dataclass
class Site:
    base: Server
    storage: Path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("uistores")
    storage = tmp / "storage"
    stores = default_stores(storage)
    append_samples(stores["LTS"], MOVE, D, OLD)
    append_samples(stores["STS"], CONS, D, FUTURE)
    append_samples(
        stores["LTS"], TYPED, D, [Sample(t, 0, i + 0.5) for i, t in enumerate(OLD_TIMES)]
    )
    with IOC(DB, tmp / "ioc") as ioc:
        with running_server(storage, ca_env(ioc)) as base:
            put_typeinfo(base, SHORT, [STS, MTS3, BLACKHOLE])
            put_typeinfo(base, REDUCED, [STS, MTS, LTS_REDUCED])
            for pv in (LONG, MOVE, CONS, TYPED):
                put_typeinfo(base, pv)
            yield Site(base, storage)


@dataclass
class UI:
    """The browser page plus what it saw: script errors and requests to other hosts."""

    page: Page
    errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def ui(site: Site) -> Iterator[UI]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("stores-*.png"):
        old.unlink()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        seen = UI(context.new_page())
        seen.page.set_default_timeout(30_000)
        base = str(site.base)
        seen.page.on("pageerror", lambda e: seen.errors.append(str(e)))
        seen.page.on(
            "request", lambda r: None if r.url.startswith(base) else seen.foreign.append(r.url)
        )
        try:
            yield seen
        finally:
            assert not seen.foreign, seen.foreign
            context.close()
            browser.close()


def shot(pg: Page, name: str) -> None:
    pg.screenshot(path=str(ARTIFACTS / f"stores-{name}.png"), full_page=True)


def open_details(pg: Page, base: str, pv: str) -> None:
    pg.goto(f"{base}/mgmt/ui/pvdetails.html?pv={pv}")
    pg.wait_for_selector("#storesTable tbody tr")


def store_rows(pg: Page) -> list[dict[str, str]]:
    """The stores table as the page shows it: one dict of column -> text per store."""
    return pg.locator("#storesTable tbody tr").evaluate_all(
        "rows => rows.map(r => Object.fromEntries("
        "[...r.querySelectorAll('td')].map(td => [td.dataset.col, td.textContent])))"
    )


def answer(pg: Page) -> tuple[str, str]:
    """The page's answer to the last action: ("ok" | "error", its text), once it shows."""
    pg.wait_for_selector("#msg.ok:visible, #msg.error:visible")
    kind = "ok" if pg.locator("#msg.ok").is_visible() else "error"
    return kind, pg.inner_text("#msg")


def clear_message(pg: Page) -> None:
    pg.evaluate("AA.message('')")  # so that answer() waits for the next action's message


def stores_for(base: str, pv: str) -> dict[str, str]:
    r = bpl(base, "getStoresForPV", params={"pv": pv})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.slow
def test_details_page_shows_each_store_and_the_retention(site: Site, ui: UI) -> None:
    pg = ui.page
    open_details(pg, site.base, SHORT)
    rows = store_rows(pg)
    assert [(r["name"], r["kind"]) for r in rows] == [
        ("STS", "pb"),
        ("MTS", "pb"),
        ("BlackHole", "blackhole"),
    ]
    mts = rows[1]
    assert mts["folder"] == "${ARCHAPPL_MEDIUM_TERM_FOLDER}"
    assert mts["granularity"] == "PARTITION_DAY"
    assert mts["holdGather"] == "hold 3, gather 1"
    assert mts["retention"] == "kept 3 days in MTS, then deleted"
    assert rows[0]["retention"] == "kept up to 1 hour in STS, then moved to MTS"
    assert rows[0]["holdGather"] == ""  # no hold/gather in the URL
    assert pg.inner_text("#retentionLine") == (
        "Kept up to 1 hour in STS, then moved to MTS; kept 3 days in MTS, then deleted."
    )
    shot(pg, "01-three-days-then-deleted")

    open_details(pg, site.base, LONG)
    rows = store_rows(pg)
    assert [r["name"] for r in rows] == ["STS", "MTS", "LTS"]
    assert rows[2]["retention"] == "kept forever in LTS"
    assert rows[1]["retention"] == "kept 2 days in MTS, then moved to LTS"
    assert pg.inner_text("#retentionLine").endswith("kept forever in LTS.")
    # the default chain's folders are real paths here (typeinfos of the policies keep macros)
    assert all(r["folder"] for r in rows)

    open_details(pg, site.base, REDUCED)
    lts = store_rows(pg)[2]
    assert (lts["reducedata"], lts["pp"]) == ("firstSample_3600", "mean_600")
    assert lts["granularity"] == "PARTITION_YEAR"
    assert "moved to LTS (reduced with firstSample_3600)" in pg.inner_text("#retentionLine")
    shot(pg, "02-reduced-lts")
    assert not ui.errors, ui.errors


@pytest.mark.slow
def test_change_store_moves_the_data_and_a_bad_url_shows_the_servers_message(
    site: Site, ui: UI
) -> None:
    pg = ui.page
    base = site.base
    old_lts = site.storage / "lts" / "UIS"
    assert sorted(old_lts.glob("move:*.pb"))
    before = stores_for(base, MOVE)

    # a URL with an unknown scheme: refused, shown word for word, nothing changed
    bad = "foo://localhost?name=LTS"
    open_details(pg, base, MOVE)
    pg.click("#pvChangeStore")
    pg.wait_for_selector("#changeStoreDialog[open]")
    pg.select_option("#changeStoreStore", "LTS")
    pg.fill("#changeStoreURL", bad)
    clear_message(pg)
    pg.click("#changeStoreOk")
    kind, text = answer(pg)
    server = bpl(base, "changeStore", params={"pv": MOVE, "storage": "LTS", "newbackend": bad})
    assert server.status_code == 400
    assert (kind, text) == ("error", server.json()["validation"])
    assert "foo" in text
    shot(pg, "03-change-store-bad-url")
    assert stores_for(base, MOVE) == before

    # a real move: the LTS goes to another folder, its files with it
    folder = site.storage / "archive2"
    new_lts = f"pb://localhost?name=LTS&rootFolder={folder}&partitionGranularity=PARTITION_YEAR"
    pg.click("#pvChangeStore")
    pg.wait_for_selector("#changeStoreDialog[open]")
    pg.select_option("#changeStoreStore", "LTS")
    # the box starts with the chosen store's URL, to be edited
    assert pg.input_value("#changeStoreURL") == before["LTS"]
    pg.fill("#changeStoreURL", new_lts)
    shot(pg, "04-change-store-dialog")
    clear_message(pg)
    pg.click("#changeStoreOk")
    kind, text = answer(pg)
    assert kind == "ok", text
    assert f"Successfully changed the storage for PV {MOVE}" in text
    assert stores_for(base, MOVE) == {**before, "LTS": new_lts}
    assert sorted((folder / "UIS").glob("move:*.pb"))
    assert not sorted(old_lts.glob("move:*.pb"))
    # the page shows the new chain (it reloads after the action)
    lts_folder = pg.locator('#storesTable tr[data-store="LTS"] td[data-col="folder"]')
    sync_api.expect(lts_folder).to_have_text(str(folder))
    shot(pg, "05-store-changed")
    assert not ui.errors, ui.errors


@pytest.mark.slow
def test_store_buttons_on_a_pv_being_archived(site: Site, ui: UI) -> None:
    """The dialog warns that the PV is not paused; the server's refusal is shown as sent."""
    pg = ui.page
    base = site.base
    r = bpl(base, "archivePV", "POST", json=[WAVE])
    assert r.status_code == 200, r.text
    wait_status(base, [WAVE], "Being archived", timeout=60)
    before = stores_for(base, WAVE)
    open_details(pg, base, WAVE)
    pg.click("#pvChangeStore")
    pg.wait_for_selector("#changeStoreDialog[open]")
    note = pg.locator("#changeStoreDialog .pausedNote")
    warning = f"{WAVE} is not paused: pause it first, or the server refuses."
    sync_api.expect(note).to_have_text(warning)
    clear_message(pg)
    pg.click("#changeStoreOk")  # the URL box holds the store's own URL
    kind, text = answer(pg)
    server = bpl(
        base,
        "changeStore",
        params={"pv": WAVE, "storage": "STS", "newbackend": before["STS"]},
    )
    assert server.status_code == 400
    assert (kind, text) == ("error", server.json()["validation"])
    assert "pause" in text
    assert stores_for(base, WAVE) == before
    shot(pg, "03b-change-store-not-paused")
    # a paused PV's dialog has no such note
    open_details(pg, base, SHORT)
    pg.click("#pvChangeStore")
    pg.wait_for_selector("#changeStoreDialog[open]")
    sync_api.expect(pg.locator("#changeStoreDialog .pausedNote")).to_be_hidden()
    pg.click("#changeStoreDialog button[data-cancel]")
    assert not ui.errors, ui.errors


@pytest.mark.slow
def test_modify_store_url_changes_the_retention_shown(site: Site, ui: UI) -> None:
    pg = ui.page
    base = site.base
    longer = MTS3.replace("hold=3", "hold=5")
    open_details(pg, base, SHORT)
    pg.click("#pvModifyStoreURL")
    pg.wait_for_selector("#modifyStoreDialog[open]")
    pg.select_option("#modifyStoreStore", "MTS")
    assert pg.input_value("#modifyStoreURL") == MTS3
    pg.fill("#modifyStoreURL", longer)
    clear_message(pg)
    pg.click("#modifyStoreOk")
    kind, text = answer(pg)
    assert kind == "ok", text
    assert stores_for(base, SHORT)["MTS"] == longer
    line = pg.locator("#retentionLine")
    sync_api.expect(line).to_contain_text("kept 5 days in MTS, then deleted")

    # a URL the server cannot use: its message, verbatim, and the URL stays
    broken = "pb://localhost?name=MTS"
    pg.click("#pvModifyStoreURL")
    pg.wait_for_selector("#modifyStoreDialog[open]")
    pg.select_option("#modifyStoreStore", "MTS")
    pg.fill("#modifyStoreURL", broken)
    clear_message(pg)
    pg.click("#modifyStoreOk")
    kind, text = answer(pg)
    server = bpl(
        base, "modifyStoreURLForPV", params={"pv": SHORT, "storage": "MTS", "plugin_url": broken}
    )
    assert server.status_code == 400
    assert (kind, text) == ("error", server.json()["validation"])
    assert stores_for(base, SHORT)["MTS"] == longer
    shot(pg, "06-modify-store-url-refused")
    assert not ui.errors, ui.errors


@pytest.mark.slow
def test_consolidate_up_to_a_date(site: Site, ui: UI) -> None:
    pg = ui.page
    base = site.base
    stores = default_stores(site.storage)
    assert len(stores["STS"].files_for_pv(CONS)) == 2
    open_details(pg, base, CONS)

    # a date the server cannot read: its message
    pg.click("#pvConsolidate")
    pg.wait_for_selector("#consolidateDialog[open]")
    pg.select_option("#consolidateStore", "MTS")
    pg.fill("#consolidateDate", "next tuesday")
    clear_message(pg)
    pg.click('#consolidateDialog button[type="submit"]')
    kind, text = answer(pg)
    server = bpl(
        base, "consolidateDataForPV", params={"pv": CONS, "storage": "MTS", "date": "next tuesday"}
    )
    assert server.status_code == 400
    assert (kind, text) == ("error", server.json()["validation"])
    assert len(stores["STS"].files_for_pv(CONS)) == 2

    # as at NOW+15 d: the sample of NOW+10 d moves into the MTS, the one of NOW+20 d stays
    date = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(NOW + 15 * DAY))
    pg.click("#pvConsolidate")
    pg.wait_for_selector("#consolidateDialog[open]")
    assert pg.input_value("#consolidateDate") == ""  # a new dialog starts blank
    pg.select_option("#consolidateStore", "MTS")
    pg.fill("#consolidateDate", date)
    shot(pg, "07-consolidate-with-date")
    clear_message(pg)
    pg.click('#consolidateDialog button[type="submit"]')
    kind, text = answer(pg)
    assert kind == "ok", text
    assert f"Successfully consolidated PV {CONS} into MTS" in text
    left = stores["STS"].files_for_pv(CONS)
    moved = stores["MTS"].files_for_pv(CONS)
    assert [f.start <= NOW + 20 * DAY < f.end for f in left] == [True]
    assert len(moved) == 1 and moved[0].start <= NOW + 10 * DAY < moved[0].end
    assert not ui.errors, ui.errors


@pytest.mark.slow
def test_change_type_refused_without_force_then_forced(site: Site, ui: UI) -> None:
    """TYPED holds 1.5, 2.5, ...: to an integer type they would lose their fractions, so
    the server refuses without force (its message shown word for word, nothing changed)
    and converts with it."""
    pg = ui.page
    base = site.base
    open_details(pg, base, TYPED)

    def change_type(newtype: str, force: bool) -> tuple[str, str]:
        pg.click("#pvChangeType")
        pg.wait_for_selector("#changeTypeDialog[open]")
        assert not pg.is_checked("#changeTypeForce")  # each dialog starts unforced
        pg.select_option("#changeTypeSelect", newtype)
        if force:
            pg.check("#changeTypeForce")
        shot(pg, f"08-change-type-dialog-{'forced' if force else 'plain'}")
        clear_message(pg)
        pg.click("#changeTypeOk")
        return answer(pg)

    def dbr() -> str:
        return str(bpl(base, "getPVTypeInfo", params={"pv": TYPED}).json()["DBRType"])

    pg.click("#pvChangeType")
    pg.wait_for_selector("#changeTypeDialog[open]")
    # the dialog starts on the PV's own type and offers every ArchDBRTypes name
    assert pg.input_value("#changeTypeSelect") == "DBR_SCALAR_DOUBLE"
    assert pg.locator("#changeTypeSelect option").count() == 15
    pg.click("#changeTypeDialog button[data-cancel]")

    kind, text = change_type("DBR_SCALAR_INT", force=False)
    server = bpl(base, "changeTypeForPV", params={"pv": TYPED, "newtype": "DBR_SCALAR_INT"})
    assert server.status_code == 400, server.text
    assert (kind, text) == ("error", server.json()["validation"])
    assert dbr() == "DBR_SCALAR_DOUBLE"
    shot(pg, "09-change-type-refused")

    kind, text = change_type("DBR_SCALAR_INT", force=True)
    assert kind == "ok", text
    assert dbr() == "DBR_SCALAR_INT"
    sync_api.expect(pg.locator("#pvDetailsTable")).to_contain_text("DBR_SCALAR_INT")
    shot(pg, "09-change-type-forced")
    assert not ui.errors, ui.errors


@pytest.mark.slow
def test_named_flags_page(site: Site, ui: UI) -> None:
    pg = ui.page
    base = site.base
    flag = "UIS_TEST_FLAG"
    pg.goto(f"{base}/mgmt/ui/index.html")
    pg.click("#nav a:has-text('Named flags')")
    pg.wait_for_selector("#flagsTable, #flagsEmpty")
    assert pg.locator(f'#flagsTable tr[data-flag="{flag}"]').count() == 0

    # a name is needed: said in the page, nothing sent
    asked: list[str] = []
    pg.on("request", lambda r: asked.append(r.url) if "NamedFlag" in r.url else None)
    pg.click("#flagSet")
    sync_api.expect(pg.locator("#msg.error")).to_have_text("Type a flag name first.")
    assert not asked

    pg.fill("#flagName", flag)
    pg.select_option("#flagValue", "true")
    pg.click("#flagSet")
    row = pg.locator(f'#flagsTable tr[data-flag="{flag}"]')
    sync_api.expect(row).to_have_attribute("data-value", "true")
    assert bpl(base, "getNamedFlag", params={"name": flag}).json() == {flag: True}
    shot(pg, "10-named-flag-set")

    # set from elsewhere, read here
    assert bpl(base, "setNamedFlag", params={"name": flag, "value": "false"}).status_code == 200
    pg.click("#flagGet")
    sync_api.expect(pg.locator("#msg.ok")).to_have_text(f"{flag} is false")
    pg.fill("#flagName", "UIS_NEVER_SET")
    pg.click("#flagGet")
    sync_api.expect(pg.locator("#msg.ok")).to_have_text("UIS_NEVER_SET is false")
    pg.click("#flagsRefresh")
    sync_api.expect(row).to_have_attribute("data-value", "false")
    # a click on the name fills the form to flip it
    row.locator("a").click()
    assert pg.input_value("#flagName") == flag
    assert pg.input_value("#flagValue") == "true"
    pg.click("#flagSet")
    sync_api.expect(row).to_have_attribute("data-value", "true")
    assert bpl(base, "getAllNamedFlags").json()[flag] is True
    shot(pg, "11-named-flags")
    assert not ui.errors, ui.errors


def choose_report(pg: Page, action: str) -> str:
    """Run the report of ``action`` and wait for its answer; the table's text, or ''."""
    value = pg.locator(f'#reportSelect option[data-action="{action}"]').first.get_attribute("value")
    assert value is not None, action
    pg.select_option("#reportSelect", value)
    pg.wait_for_selector("#reportTable, #reportEmpty, #msg.error:visible")
    assert not pg.locator("#msg.error").is_visible(), pg.inner_text("#msg")
    return pg.inner_text("#reportTable") if pg.locator("#reportTable").count() else ""


@pytest.mark.slow
def test_new_reports(site: Site, ui: UI) -> None:
    pg = ui.page
    base = site.base
    r = bpl(base, "archivePV", "POST", json=[WAVE, GHOST])
    assert r.status_code == 200, r.text
    wait_status(base, [WAVE], "Being archived", timeout=60)
    assert wait_for(
        lambda: GHOST in {m["pvName"] for m in bpl(base, "getMetaGets").json()}, 30, 0.2
    )
    pg.goto(f"{base}/mgmt/ui/reports.html")

    text = choose_report(pg, "getArchivedWaveforms")
    row = pg.locator("#reportTable tbody tr", has_text=WAVE)
    assert row.locator('td[data-col="dbrtype"]').inner_text() == "DBR_WAVEFORM_DOUBLE"
    assert row.locator('td[data-col="elementCount"]').inner_text() == "16"
    shot(pg, "12-report-waveforms")

    text = choose_report(pg, "getMetaGets")
    assert GHOST in text
    heads = pg.locator("#reportTable th").all_inner_texts()
    assert heads[:3] == ["PV Name", "Monitoring started?", "Appliance"], heads
    # the AA's HTML list in mainMeta drawn as a list of texts, no markup shown
    meta = pg.locator("#reportTable tbody tr", has_text=GHOST).locator('td[data-col="mainMeta"]')
    assert meta.locator("li").first.inner_text().startswith("Events so far: ")
    assert "<" not in meta.inner_text()
    shot(pg, "13-report-meta-gets")

    # an object keyed by PV on the wire: one row per PV here, with its creation time
    text = choose_report(pg, "getTimeSpanReport")
    span = bpl(base, "getTimeSpanReport").json()
    assert pg.locator("#reportTable tbody tr").count() == len(span)
    row = pg.locator("#reportTable tbody tr", has_text=SHORT)
    assert row.locator('td[data-col="creationTS"]').inner_text() == span[SHORT]["creationTS"]
    assert row.locator('td[data-col="pvName"] a').get_attribute("href") == (
        f"pvdetails.html?pv={SHORT.replace(':', '%3A')}"
    )
    shot(pg, "14-report-time-span")

    # nothing here drops events for bad timestamps: an empty report, said so
    expected = bpl(base, "getSlowChangingPVsWithDroppedEvents", params={"limit": "1000"}).json()
    text = choose_report(pg, "getSlowChangingPVsWithDroppedEvents")
    if expected:
        assert all(e["pvName"] in text for e in expected)
    else:
        assert pg.locator("#reportEmpty").is_visible()
    assert not ui.errors, ui.errors
