"""ACCESS_RIGHTS from a real IOC with access security: stored on the channel, pushed on change.

The IOC loads an ACF; changing a record's ASG field over CA makes RSRV push new rights to
every client, as a gateway does when its ACF changes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pvarchiver.ca import CAClient, CAError

from .helpers.wait import until
from .ioc import IOC

ACF = """
ASG(DEFAULT) { RULE(1, WRITE) }
ASG(RO) { RULE(1, READ) }
ASG(NOTHING) { RULE(1, NONE) }
"""

DB = """
record(ao, "A:AO") { field(VAL, "1.5") field(PINI, "YES") }
record(ai, "A:HIDDEN") { field(ASG, "NOTHING") field(VAL, "2") field(PINI, "YES") }
"""


def test_access_rights_stored_and_changes_pushed(tmp_path: Path) -> None:
    async def main(ioc: IOC) -> None:
        async with CAClient(ioc.client_config()) as ca:
            rights: list[int] = []
            ao = ca.create_channel("A:AO", on_access_rights=lambda ch, r: rights.append(r))
            asg = ca.create_channel("A:AO.ASG")
            hidden = ca.create_channel("A:HIDDEN")
            for ch in (ao, asg, hidden):
                await ca.wait_connected(ch, 20)
            assert rights == [3] and ao.read_access and ao.write_access
            assert hidden.access == 0 and not hidden.read_access  # connected, but no rights
            with pytest.raises(CAError):
                await ca.get(hidden)
            await ca.put(ao, 2.5)
            await ca.put(asg, "RO")  # the IOC re-evaluates and pushes ACCESS_RIGHTS
            await until(lambda: rights[-1:] == [1])
            assert ao.read_access and not ao.write_access
            assert (await ca.get(ao)).value == 2.5
            with pytest.raises(CAError):
                await ca.put(ao, 3.5)
            assert (await ca.get(ao)).value == 2.5

    with IOC(DB, tmp_path, acf=ACF) as ioc:
        asyncio.run(asyncio.wait_for(main(ioc), 120))
