"""End to end with a real IOC: CA monitors -> engine -> STS files -> ``pvarchiver pb dump``."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pvarchiver.ca import CAClient
from pvarchiver.engine.archived_pv import SamplingMethod
from pvarchiver.engine.channels import CAArchiver
from pvarchiver.engine.writer import Engine

from .aio import run
from .helpers.stores import make_store
from .helpers.wait import until
from .ioc import IOC

SRC = Path(__file__).resolve().parents[1] / "src"

DB = """
record(calc, "E:CNT") { field(SCAN, ".1 second") field(CALC, "A+1") field(INPA, "E:CNT")
    field(EGU, "counts") field(PREC, "1") field(HIHI, "1e9") }
record(calc, "E:FAST") { field(SCAN, ".1 second") field(CALC, "A+1") field(INPA, "E:FAST") }
record(stringin, "E:STR") { field(VAL, "hello\\nworld") field(PINI, "YES") }
record(mbbi, "E:ENUM") { field(ZRST, "Off") field(ONST, "On") field(VAL, "1") field(PINI, "YES") }
record(waveform, "E:WAVE") { field(FTVL, "DOUBLE") field(NELM, "4") field(INP, [1, 2, 3])
    field(PINI, "YES") }
record(waveform, "E:CHARS") { field(FTVL, "CHAR") field(NELM, "8") field(INP, [104, 10, 13, 27])
    field(PINI, "YES") }
record(longin, "E:LONG") { field(VAL, "-70000") field(PINI, "YES") }
"""


def dump(path: Path) -> list[dict[str, Any]]:
    r = subprocess.run(
        [sys.executable, "-m", "pvarchiver", "pb", "dump", str(path)],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(SRC)),
        check=True,
    )
    return [json.loads(line) for line in r.stdout.splitlines()]


def dumps_of(engine: Engine, pv: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for pf in engine.sts.files_for_pv(pv):
        out += dump(pf.path)
    return out


def test_every_type_end_to_end_into_pb_files(tmp_path: Path) -> None:
    engine = Engine(make_store(tmp_path / "storage", "STS", "PARTITION_HOUR"))

    async def main() -> None:
        with IOC(DB, tmp_path / "ioc") as ioc:
            async with CAClient(ioc.client_config()) as ca:
                arch = CAArchiver(engine, ca)
                for name in ("E:CNT", "E:STR", "E:ENUM", "E:WAVE", "E:CHARS", "E:LONG"):
                    arch.archive(name)
                arch.archive("E:FAST", SamplingMethod.SCAN, period=0.5)
                arch.start()
                await until(
                    lambda: len(engine.pvs) == 7 and engine.pvs["E:CNT"].metrics.events_stored >= 20
                )
                await until(lambda: "EGU" in arch.metadata("E:CNT"))
                await asyncio.sleep(1.0)
                await asyncio.to_thread(engine.write_all)
                await arch.stop()

    run(main())
    cnt = dumps_of(engine, "E:CNT")
    assert cnt[0]["header"] == {
        "type": "SCALAR_DOUBLE",
        "pvname": "E:CNT",
        "year": time.gmtime().tm_year,
    }
    vals = [d["val"] for d in cnt[1:]]
    assert len(vals) >= 20 and vals == sorted(vals) and len(set(vals)) == len(vals)
    assert all(b - a == 1.0 for a, b in itertools.pairwise(vals))  # nothing lost
    first = cnt[1]["fields"]
    assert first["startup"] == "true" and "cnxregainedepsecs" in first
    # EGU/PREC and the archive field HIHI land in the stream as fieldvalues
    fields = {k: v for d in cnt[1:] for k, v in d.get("fields", {}).items()}
    assert fields["EGU"] == "counts" and fields["PREC"] == "1" and float(fields["HIHI"]) == 1e9

    def values(pv: str) -> tuple[str, list[Any]]:
        d = dumps_of(engine, pv)
        return d[0]["header"]["type"], [x["val"] for x in d[1:]]

    assert values("E:STR") == ("SCALAR_STRING", ["hello\nworld"])  # a real LF, escaped in the file
    assert values("E:ENUM") == ("SCALAR_ENUM", [1])
    # subscribed with the channel's element count (NELM), as the AA does
    assert values("E:WAVE") == ("WAVEFORM_DOUBLE", [[1.0, 2.0, 3.0, 0.0]])
    assert values("E:CHARS") == ("WAVEFORM_BYTE", [[104, 10, 13, 27, 0, 0, 0, 0]])
    assert values("E:LONG") == ("SCALAR_INT", [-70000])
    fast_type, fast_vals = values("E:FAST")
    secs = [d["secs"] + d["nanos"] / 1e9 for d in dumps_of(engine, "E:FAST")[1:]]
    # SCAN at 0.5 s of a 10 Hz PV: far fewer samples than events, about two per second
    assert (
        fast_type == "SCALAR_DOUBLE"
        and 2 <= len(fast_vals) < engine.pvs["E:FAST"].metrics.events_received
    )
    assert all(b - a >= 0.5 * 0.95 - 0.11 for a, b in itertools.pairwise(secs))


@pytest.mark.slow
def test_ioc_restart_gives_cnx_fields_and_no_duplicates(tmp_path: Path) -> None:
    engine = Engine(make_store(tmp_path / "storage", "STS", "PARTITION_HOUR"))

    async def main() -> None:
        ioc = IOC(DB, tmp_path / "ioc")
        ioc.start()
        try:
            async with CAClient(ioc.client_config()) as ca:
                arch = CAArchiver(engine, ca)
                arch.archive("E:CNT", fields=())
                await until(
                    lambda: (
                        "E:CNT" in engine.pvs and engine.pvs["E:CNT"].metrics.events_stored >= 10
                    )
                )
                ioc.kill()
                await until(lambda: not engine.pvs["E:CNT"].metrics.connected)
                await asyncio.sleep(1.5)
                ioc.start()
                before = engine.pvs["E:CNT"].metrics.events_stored
                await until(lambda: engine.pvs["E:CNT"].metrics.events_stored >= before + 10, 60)
                await asyncio.to_thread(engine.write_all)
        finally:
            ioc.stop()

    run(main())
    d = dumps_of(engine, "E:CNT")[1:]
    ts = [(x["secs"], x["nanos"]) for x in d]
    assert ts == sorted(set(ts))  # (the store enforces this too)
    assert d[0]["fields"].get("startup") == "true"
    regained = [i for i, x in enumerate(d) if i and "cnxlostepsecs" in x.get("fields", {})]
    assert len(regained) == 1
    k = regained[0]
    f = d[k]["fields"]
    assert int(f["cnxregainedepsecs"]) >= int(f["cnxlostepsecs"])
    # the fields sit on the first sample from the restarted IOC, whose counter began again
    assert d[k]["val"] < d[k - 1]["val"]
    assert all(b["val"] - a["val"] == 1.0 for a, b in itertools.pairwise(d[:k]))
    assert engine.pvs["E:CNT"].metrics.connection_loss_regain_count == 1
