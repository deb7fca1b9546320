"""Status that tells the truth (issue 15, items 3 and 4), without a server: which PVs' writes
fail and since when, when that is reported and when it clears, free space against the
low-space threshold, the health verdict and its ``/metrics`` families.

Writes are made to fail as in test_engine_core: a file where a PV's folder must go."""

from __future__ import annotations

import calendar
import logging
import re
import shutil
from collections import namedtuple
from pathlib import Path

import pytest

from pvarchiver.engine.journal import Journal
from pvarchiver.engine.writer import Engine
from pvarchiver.mgmt.health import Health, low_space_threshold, measure
from pvarchiver.mgmt.prometheus import health_families, render
from pvarchiver.pb import PayloadType
from pvarchiver.settings import HealthSettings
from pvarchiver.storage import PlainPBStore

from .helpers.clock import Clock
from .helpers.stores import make_store

D = PayloadType.SCALAR_DOUBLE
NOW = calendar.timegm((2025, 6, 1, 12, 0, 0))
GIB = 1 << 30
DiskUsage = namedtuple("DiskUsage", "total used free")


def _engine(tmp_path: Path, journal: Journal | None = None) -> tuple[Engine, PlainPBStore, Clock]:
    sts = make_store(tmp_path, "STS", "PARTITION_HOUR")
    clock = Clock(NOW)
    return Engine(sts, seconds_to_buffer=10, clock=clock, journal=journal), sts, clock


def _block(sts: PlainPBStore, top: str) -> Path:
    blocker = sts.root / top
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where the PV's folder must go: its writes fail")
    return blocker


def test_failure_is_reported_after_two_write_periods_and_clears_on_first_success(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine, sts, clock = _engine(tmp_path)
    bad, good = engine.add_pv("BAD:AI", D), engine.add_pv("GOOD:AI", D)
    for pv in (bad, good):
        pv.on_connect(D)
    blocker = _block(sts, "BAD")
    # a file where a folder should be is no folder and no files (it gave /metrics a 500)
    assert sts.files_for_pv("BAD:AI") == [] and sts.files_for_pvs(["BAD:AI"]) == {"BAD:AI": []}
    health = engine.write_health
    caplog.set_level(logging.DEBUG, logger="pvarchiver.engine")
    value = 0.0
    for cycle in range(4):  # four failed write cycles, 10 s apart
        for pv in (bad, good):
            pv.on_event(int(clock.t), 0, 0, 0, value)
        value += 1
        engine.write_all()
        if cycle == 0:
            # one failed cycle is a hiccup: counted, not reported
            assert health.pvs == {"BAD:AI": NOW} and health.since == NOW
            assert health.pv_since("BAD:AI", clock.t) == 0 and health.failure(clock.t) is None
        clock.t += 10
    # the oldest unwritten samples are now 40 s old, more than two write periods
    assert health.pv_since("BAD:AI", clock.t) == NOW and health.pv_since("GOOD:AI", clock.t) == 0
    f = health.failure(clock.t)
    assert f is not None and (f.store, f.since, f.pvs, f.error_pv) == ("STS", NOW, 1, "BAD:AI")
    assert f.error and f.seconds(clock.t) == 40
    assert bad.metrics.write_errors == 4 and good.metrics.write_errors == 0
    # one line when the store starts failing, none per PV and cycle
    started = [r for r in caplog.records if "writes failing" in r.getMessage()]
    assert len(started) == 1 and started[0].levelno == logging.ERROR
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and r not in started]
    # the store recovers: the first successful write ends it, nothing was lost
    blocker.unlink()
    assert engine.write_all() == 4
    assert health.pvs == {} and health.since == 0 and health.failure(clock.t) is None
    assert [s.val for s in sts.read_all("BAD:AI")] == [0.0, 1.0, 2.0, 3.0]
    assert any("writes succeed again after 40 s" in r.getMessage() for r in caplog.records)


def test_a_deleted_pv_no_longer_keeps_the_store_failing(tmp_path: Path) -> None:
    engine, sts, clock = _engine(tmp_path)
    pv = engine.add_pv("BAD:AI", D)
    pv.on_connect(D)
    _block(sts, "BAD")
    pv.on_event(NOW, 0, 0, 0, 1.0)
    engine.write_all()
    clock.t += 30
    assert engine.write_health.failure(clock.t) is not None
    engine.remove_pv("BAD:AI")
    assert engine.write_health.failure(clock.t) is None and engine.write_health.pvs == {}


@pytest.mark.parametrize(
    ("total", "free", "low"),
    [
        (100 * GIB, 4 * GIB, True),  # under 5 % (5 GiB), over 1 GiB
        (100 * GIB, 6 * GIB, False),
        (10 * GIB, GIB - 1, True),  # over 5 % (0.5 GiB), under 1 GiB
        (10 * GIB, 2 * GIB, False),
        (256 << 10, 200 << 10, True),  # a small disk is always under 1 GiB
    ],
)
def test_low_space_is_either_threshold(total: int, free: int, low: bool) -> None:
    s = HealthSettings()
    assert (free < low_space_threshold(total, s)) is low
    assert low_space_threshold(total, HealthSettings(0, 0)) == 0  # switched off


def test_space_watch_warns_once_and_says_when_it_is_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    engine, _sts, _clock = _engine(tmp_path)
    free = {"bytes": 50 * GIB}
    real = shutil.disk_usage

    def fake(path: object) -> DiskUsage:
        if Path(str(path)).is_relative_to(tmp_path):
            return DiskUsage(100 * GIB, 100 * GIB - free["bytes"], free["bytes"])
        return real(path)  # type: ignore[arg-type,return-value]

    monkeypatch.setattr(shutil, "disk_usage", fake)
    watch = Health([engine.sts], engine, HealthSettings())
    caplog.set_level(logging.INFO, logger="pvarchiver.mgmt.health")
    watch.check(NOW)
    assert not watch.space["STS"].low and watch.report(NOW).status == "ok"
    free["bytes"] = 3 * GIB
    for i in range(3):
        watch.check(NOW + i)
    sp = watch.space["STS"]
    assert sp.low and sp.threshold == 5 * GIB and sp.free == 3 * GIB
    warned = [r for r in caplog.records if "low disk space" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING
    assert "3.00 GiB free of 100.00 GiB (3.0 %)" in warned[0].getMessage()
    rep = watch.report(NOW + 3)
    assert rep.status == "warning" and rep.http_status == 200 and not rep.problems
    assert rep.warnings == [f"STS: low disk space: {sp.describe()}"]
    free["bytes"] = 10 * GIB
    watch.check(NOW + 4)
    assert not watch.space["STS"].low and watch.report(NOW + 4).status == "ok"
    assert "disk space back above the threshold" in caplog.text
    # a folder that does not exist yet is measured on its nearest existing parent
    assert measure("X", tmp_path / "not" / "yet", HealthSettings()).total == 100 * GIB


def test_health_levels_json_and_metrics(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal")
    engine, sts, _clock = _engine(tmp_path, journal)
    pv = engine.add_pv("BAD:AI", D)
    pv.on_connect(D)
    _block(sts, "BAD")
    watch = Health([sts], engine, HealthSettings(0, 0, unhealthy_after_seconds=60))
    watch.check(NOW)
    assert [sp.name for sp in watch.space.values()] == ["STS", "journal"]
    pv.on_event(NOW, 0, 0, 0, 1.0)
    engine.write_all()
    assert watch.report(NOW + 5).status == "ok"  # failing, but not for long enough to report
    rep = watch.report(NOW + 30)
    assert rep.status == "warning" and rep.http_status == 200
    assert re.fullmatch(
        r"store STS: writes failing for 30 s \(since .+\), 1 PV\(s\) waiting, latest error "
        r"\(BAD:AI\): .+",
        rep.warnings[0],
    )
    rep = watch.report(NOW + 61)
    assert rep.status == "unhealthy" and rep.http_status == 503
    assert rep.problems[0].startswith("store STS: writes failing for 61 s") and not rep.warnings
    body = rep.as_json("appliance0")
    assert body["status"] == "unhealthy" and body["unhealthyAfterSeconds"] == "60"
    sts_row, journal_row = body["stores"]
    assert sts_row["writeFailing"] == "true" and sts_row["writeFailingSeconds"] == "61"
    assert sts_row["writeFailingPVs"] == "1" and sts_row["writeError"]
    assert sts_row["lowSpace"] == "false" and "writeFailing" not in journal_row
    assert all(isinstance(v, str) for row in body["stores"] for v in row.values())
    text = render(health_families(rep))
    for line in (
        "pvarchiver_stores_write_failing 1",
        'pvarchiver_store_write_failing{store="STS"} 1',
        'pvarchiver_store_write_failing_seconds{store="STS"} 61',
        'pvarchiver_store_write_failing_pvs{store="STS"} 1',
        "pvarchiver_stores_low_space 0",
        'pvarchiver_store_low_space{store="journal"} 0',
        "pvarchiver_unhealthy 1",
        "pvarchiver_journal_write_errors_total 0",
    ):
        assert line in text.splitlines(), line
    # a journal whose writes fail is a warning (samples still archived, not crash-safe)
    journal.stats.write_errors += 1
    journal.stats.last_error = "No space left on device"
    watch.check(NOW + 62)
    warnings = watch.report(NOW + 62).warnings
    assert any(w.startswith("journal: writes failing since") for w in warnings)
    watch.check(NOW + 64)  # no new error since the last check: over
    assert watch.journal_failing_since == 0
    journal.close(drop_all=True)
