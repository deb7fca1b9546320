"""Bad input to the engine: clear status per PV, no crash, no effect on the other PVs.

Invalid names are never searched, a PV nobody serves says since when and how often it was
searched, an array over EPICS_CA_MAX_ARRAY_BYTES is paused with the reason (clipped values
would be stored as if whole), and a good PV of the same IOC archives throughout.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from pvarchiver.ca import CAClient
from pvarchiver.engine.channels import CAArchiver
from pvarchiver.engine.writer import Engine

from .helpers.stores import make_store
from .helpers.wait import until
from .ioc import IOC

DB = """
record(calc, "BI:GOOD") { field(SCAN, ".1 second") field(CALC, "A+1") field(INPA, "BI:GOOD") }
record(waveform, "BI:BIG") { field(FTVL, "DOUBLE") field(NELM, "5000") field(INP, [1, 2, 3])
    field(PINI, "YES") }
"""

BAD_NAMES = {
    "": "empty PV name",
    "BI:GOOD WITH SPACE": "a space",
    "BI:" + "X" * 60: "longer than 60",
    "BI:\x07BELL": "control character 0x07",
    "BI:GOOD\n": "white space",
}


def test_bad_names_missing_pvs_and_oversized_arrays(tmp_path: Path) -> None:
    engine = Engine(make_store(tmp_path / "storage", "STS", "PARTITION_HOUR"))

    async def main(ioc: IOC) -> None:
        # the client's limit is the default 16384 bytes: 5000 doubles (40 kB) do not fit
        cfg = ioc.client_config(max_search_period=1.0, max_array_bytes=16384)
        async with CAClient(cfg) as ca:
            arch = CAArchiver(engine, ca)
            for name in [*BAD_NAMES, "BI:GOOD", "BI:NOT:SERVED", "BI:BIG"]:
                arch.archive(name)
            await until(lambda: "BI:BIG" in engine.pvs and "BI:GOOD" in engine.pvs)
            await until(lambda: engine.pvs["BI:GOOD"].metrics.events_stored >= 5)
            await until(lambda: ca.search_tries(arch.channels["BI:NOT:SERVED"]) >= 3)
            for name, reason in BAD_NAMES.items():
                msg = arch.status_message(name)
                assert msg.startswith("invalid PV name:") and reason in msg, (name, msg)
                assert ca.search_tries(arch.channels[name]) == 0  # never searched
                assert name not in engine.pvs
            never = arch.status_message("BI:NOT:SERVED")
            assert never.startswith("never connected: no server answered"), never
            big = engine.pvs["BI:BIG"]
            assert big.paused and "EPICS_CA_MAX_ARRAY_BYTES=16384" in big.status_message
            assert "5000 elements" in arch.status_message("BI:BIG")
            assert arch.status_message("BI:GOOD") == ""
            assert engine.write_all() >= 5

    with IOC(DB, tmp_path / "ioc", max_array_bytes=1_000_000) as ioc:
        asyncio.run(asyncio.wait_for(main(ioc), 120))
    assert engine.sts.files_for_pv("BI:GOOD")
    assert not engine.sts.files_for_pv("BI:BIG")  # nothing clipped was stored
    assert engine.pvs["BI:BIG"].metrics.events_stored == 0


def test_oversized_array_archived_when_the_limit_allows(tmp_path: Path) -> None:
    engine = Engine(make_store(tmp_path / "storage", "STS", "PARTITION_HOUR"))

    async def main(ioc: IOC) -> None:
        async with CAClient(ioc.client_config(max_array_bytes=1_000_000)) as ca:
            arch = CAArchiver(engine, ca)
            arch.archive("BI:BIG")
            await until(lambda: "BI:BIG" in engine.pvs)
            await until(lambda: engine.pvs["BI:BIG"].metrics.events_stored >= 1)
            assert not engine.pvs["BI:BIG"].paused and arch.status_message("BI:BIG") == ""

    with IOC(DB, tmp_path / "ioc", max_array_bytes=1_000_000) as ioc:
        asyncio.run(asyncio.wait_for(main(ioc), 120))
    assert engine.write_all() == 1
    (sample,) = list(engine.sts.read_all("BI:BIG"))
    assert len(sample.val) == 5000 and list(sample.val[:4]) == [1.0, 2.0, 3.0, 0.0]
