"""PV lists, per-appliance actions and appliance configuration of the management BPL, end
to end against a real ``pvarchiver serve`` (issue 16).

One server for the module. Its PVs are registered with putPVTypeInfo (paused, so no
Channel Access is needed) and one archive request never connects (no IOC serves it), so
it stays in the workflow. The appendAndAliasPV PVs get a history written into the STS, MTS
and LTS before the server starts. The skipAliasCheck test starts the module's softIoc
(created, with its ports, before the server, so the server points at it) when it wants its
PVs to connect. Two tests drive mgmt objects directly: a stopped workflow loop, and an
appendAndAliasPV swap interrupted half way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from pvarchiver.pb import PayloadType, Sample
from pvarchiver.storage import PlainPBStore, default_store_urls, open_store, parse_store_url
from pvarchiver.storage.batch import append_samples

from .helpers.fixtures import ioc_fixture
from .helpers.mgmt import bpl, ca_env, statuses, wait_status
from .http_server import Server, running_server
from .ioc import IOC

A, B, C = "LS:A", "LS:B", "LS:C"
ALIAS = "LS:A_ALIAS"
PENDING = "LS:PENDING"  # no IOC serves it: stays in Initial sampling

# appendAndAliasPV: two pairs of PVs with a history written into the stores before the
# server starts (value ranges tell the PVs apart: older 1000s/2000s, newer 5000s/6000s)
OLD, NEW, OLD_ALIAS = "LS:OLD", "LS:NEW", "LS:OLD_ALIAS"
OLD2, NEW2 = "LS:OLD2", "LS:NEW2"
HISTORY: dict[str, list[tuple[str, str, int, int, float]]] = {
    # pv: [(store, first sample, samples, seconds apart, first value)]
    OLD: [
        ("LTS", "2020-03-01T00:00:00Z", 40, 3600, 1000),
        # its last 6 samples are at or after NEW's first: the newer PV's data wins there
        ("MTS", "2021-05-31T00:00:00Z", 30, 3600, 1100),
    ],
    NEW: [
        ("MTS", "2021-06-01T00:00:00Z", 10, 600, 5000),
        ("STS", "2021-06-02T10:00:00Z", 5, 60, 5100),
    ],
    OLD2: [("LTS", "2019-01-01T00:00:00Z", 20, 86400, 2000)],
    NEW2: [
        ("LTS", "2020-01-01T00:00:00Z", 10, 3600, 6000),
        ("STS", "2021-01-01T00:00:00Z", 5, 60, 6100),
    ],
}


def epoch(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


def history(pv: str) -> list[tuple[int, float]]:
    """(seconds, value) of every sample seeded for ``pv``, in time order."""
    out = []
    for _store, first, n, step, value in HISTORY[pv]:
        out += [(epoch(first) + i * step, float(value + i)) for i in range(n)]
    return sorted(out)


def served_stores(root: Path) -> dict[str, PlainPBStore]:
    """The server's default STS, MTS and LTS, opened as serve opens them."""
    configs = map(parse_store_url, default_store_urls(root))
    return {c.name: open_store(c) for c in configs}


def seed_history(root: Path) -> None:
    stores = served_stores(root)
    for pv, parts in HISTORY.items():
        for store, first, n, step, value in parts:
            samples = [Sample(epoch(first) + i * step, 0, float(value + i)) for i in range(n)]
            result = append_samples(stores[store], pv, PayloadType.SCALAR_DOUBLE, samples)
            assert result.written == n


def retrieved(base: str, pv: str) -> list[tuple[int, float]]:
    r = httpx.get(
        f"{base}/retrieval/data/getData.json",
        params={"pv": pv, "from": "2018-01-01T00:00:00Z", "to": "2022-01-01T00:00:00Z"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return [(d["secs"], d["val"]) for d in r.json()[0]["data"]]


IOC_DB = """
record(ao, "LS:IOC:REAL") { field(VAL, "1") }
alias("LS:IOC:REAL", "LS:IOC:AL1")
alias("LS:IOC:REAL", "LS:IOC:AL2")
"""


def typeinfo(name: str, **extra: object) -> dict[str, object]:
    return {
        "pvName": name,
        "DBRType": "DBR_SCALAR_DOUBLE",
        "samplingPeriod": "1.0",
        "paused": "true",
        **extra,
    }


def put_typeinfo(base: str, name: str, **extra: object) -> None:
    r = bpl(
        base,
        "putPVTypeInfo",
        "POST",
        params={"pv": name, "createnew": "true"},
        json=typeinfo(name, **extra),
    )
    assert r.status_code == 200, r.text


def refused(r: httpx.Response, status: int, text: str) -> None:
    """A refusal in the mgmt BPL's error format, with a message that says why."""
    assert r.status_code == status, (r.request.url, r.status_code, r.text)
    body = r.json()
    assert body["status"] == "error" and text in body["validation"], body


#: the IOC of the alias tests, created (its ports chosen) but not started: the server
#: points at it from the start, and a test starts it when it wants the PVs to connect
ioc = ioc_fixture(IOC_DB, started=False)


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lists") / "storage"


@pytest.fixture(scope="module")
def server(storage: Path, ioc: IOC) -> Iterator[Server]:
    seed_history(storage)
    with running_server(storage, ca_env(ioc)) as base:
        put_typeinfo(base, A, archiveFields=["HIHI", "LOLO"])
        put_typeinfo(base, B)
        put_typeinfo(base, C)
        for name in HISTORY:
            put_typeinfo(base, name)
        r = bpl(base, "addAlias", params={"pv": OLD, "aliasname": OLD_ALIAS})
        assert r.status_code == 200, r.text
        r = bpl(base, "addAlias", params={"pv": A, "aliasname": ALIAS})
        assert r.status_code == 200, r.text
        r = bpl(base, "archivePV", params={"pv": PENDING})
        assert r.json()[0]["status"] == "Archive request submitted", r.text
        yield base


# ---------------------------------------------------------------------- lists
ASKED = [
    A,
    f"{A}.HIHI",  # archived with A
    f"{A}.HOPR",  # not one of A's archive fields
    ALIAS,  # an alias of A
    f"{ALIAS}.LOLO",  # a field of A through its alias
    f"{A}.VAL",
    f"ca://{B}",
    PENDING,  # in the workflow: no typeinfo yet
    "LS:NOPE",
]
ARCHIVED = [A, f"{A}.HIHI", ALIAS, f"{ALIAS}.LOLO", f"{A}.VAL", f"ca://{B}"]
UNARCHIVED = [f"{A}.HOPR", PENDING, "LS:NOPE"]


def post_forms(base: str, action: str, names: list[str]) -> list[list[str]]:
    """The answer of ``action`` to ``names`` sent in each of the AA's input forms."""
    forms: list[dict[str, object]] = [
        {"json": names},
        {"json": [{"pv": n} for n in names]},
        {"content": "\n".join(names) + "\n", "headers": {"content-type": "text/plain"}},
        {"data": {"pv": ",".join(names)}},
        {"params": {"pv": ",".join(names)}},
    ]
    out = []
    for kw in forms:
        r = bpl(base, action, "POST", **kw)
        assert r.status_code == 200, (action, kw, r.text)
        assert r.headers["content-type"].startswith("application/json")
        out.append(r.json())
    return out


def test_archived_and_unarchived_in_every_input_form(server: Server) -> None:
    for got in post_forms(server, "archivedPVs", ASKED):
        assert got == ARCHIVED
    for got in post_forms(server, "unarchivedPVs", ASKED):
        assert got == UNARCHIVED
    # the two answers split the input; unarchivedPVs names each PV once
    r = bpl(server, "unarchivedPVs", "POST", json=["LS:NOPE", A, "LS:NOPE"])
    assert r.json() == ["LS:NOPE"]
    r = bpl(server, "archivedPVs", "POST", json=[B, B])
    assert r.json() == [B, B]
    # an empty list is a list: nothing in it is archived
    assert bpl(server, "archivedPVs", "POST", json=[]).json() == []
    assert bpl(server, "unarchivedPVs", "POST", json=[]).json() == []


def test_archived_not_in_list(server: Server) -> None:
    everything = bpl(server, "getPVsForThisAppliance").json()
    assert {A, B, C} <= set(everything)
    # A named by its alias and B with .VAL are in the list: only the others are reported
    for got in post_forms(server, "archivedPVsNotInList", [ALIAS, f"{B}.VAL", "LS:NOPE"]):
        assert got == [n for n in everything if n not in (A, B)]
    # a field of A does not name A
    got = bpl(server, "archivedPVsNotInList", "POST", json=[f"{A}.HIHI"]).json()
    assert A in got
    refused(bpl(server, "archivedPVsNotInList", "POST", json=[]), 400, "empty")


def test_list_actions_refuse_bad_input(server: Server) -> None:
    for action in ("archivedPVs", "unarchivedPVs", "archivedPVsNotInList"):
        refused(bpl(server, action, params={"pv": A}), 405, "needs a POST")
        refused(bpl(server, action, "POST"), 400, "No PV names")
        refused(
            bpl(
                server,
                action,
                "POST",
                content=b"[1, 2",
                headers={"content-type": "application/json"},
            ),
            400,
            "not valid JSON",
        )
        refused(bpl(server, action, "POST", json=[A, 3]), 400, "Item 1")
        refused(bpl(server, action, "POST", json={"pv": A}), 400, "JSON list")


# ---------------------------------------------------------------------- this appliance
def test_pvs_and_typeinfo_keys_of_this_appliance(server: Server) -> None:
    everything = bpl(server, "getAllPVs", params={"limit": "-1"}).json()
    assert {A, B, C} <= set(everything) and ALIAS not in everything
    assert PENDING not in everything
    assert bpl(server, "getPVsForThisAppliance").json() == everything
    assert bpl(server, "getTypeInfoKeys").json() == everything
    paused = bpl(server, "getPausedPVsForThisAppliance").json()
    report = [row["pvName"] for row in bpl(server, "getPausedPVsReport").json()]
    assert paused == report and {A, B, C} <= set(paused)
    refused(bpl(server, "getPVsForThisAppliance", params={"regex": ".*"}), 400, "regex")


def test_never_connected_and_abort_for_this_appliance(server: Server) -> None:
    rows = bpl(server, "getNeverConnectedPVsForThisAppliance").json()
    assert rows == bpl(server, "getNeverConnectedPVs").json()
    (row,) = [r for r in rows if r["pvName"] == PENDING]
    assert set(row) == {"pvName", "requestTime", "startOfWorkflow", "currentState", "appliance"}
    assert row["appliance"] == bpl(server, "getApplianceInfo").json()["identity"]
    refused(bpl(server, "abortArchivingPVForThisAppliance"), 400, "pv")
    r = bpl(server, "abortArchivingPVForThisAppliance", params={"pv": PENDING})
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "desc": f"Aborted request for archiving PV {PENDING}"}
    r = bpl(server, "abortArchivingPVForThisAppliance", params={"pv": PENDING})
    assert r.json()["status"] == "no"
    assert statuses(server, [PENDING])[PENDING] == "Not being archived"
    names = [r["pvName"] for r in bpl(server, "getNeverConnectedPVsForThisAppliance").json()]
    assert PENDING not in names


# ---------------------------------------------------------------------- configuration
def test_export_and_import_config_for_appliance(server: Server) -> None:
    exported = bpl(server, "exportConfigForAppliance")
    assert exported.status_code == 200
    assert exported.json() == bpl(server, "exportConfig").json()
    assert {A, B, C} <= {ti["pvName"] for ti in exported.json()}
    me = bpl(server, "getApplianceInfo").json()["identity"]
    body = [
        typeinfo("LS:IMP1", applianceIdentity=me),
        typeinfo(A, applianceIdentity=me),  # already archived here
        typeinfo("LS:OTHER", applianceIdentity="some_other_appliance"),
        typeinfo("LS:IMP2", applianceIdentity=me, archiveFields=["HIHI"]),
    ]
    r = bpl(server, "importConfigForAppliance", "POST", json=body)
    assert r.status_code == 200, r.text
    assert r.json() == {"appliance": me, "errorPVs": [A, "LS:OTHER"]}
    ti = bpl(server, "getPVTypeInfo", params={"pv": "LS:IMP2"}).json()
    assert ti["archiveFields"] == ["HIHI"] and ti["applianceIdentity"] == me
    assert statuses(server, ["LS:IMP1", "LS:OTHER"]) == {
        "LS:IMP1": "Paused",
        "LS:OTHER": "Not being archived",
    }
    # all or nothing: one bad entry refuses the body before anything is registered
    bad = [typeinfo("LS:IMP3", applianceIdentity=me), {"pvName": "LS:IMP4", "DBRType": "NOPE"}]
    refused(bpl(server, "importConfigForAppliance", "POST", json=bad), 400, "entry 1")
    refused(bpl(server, "importConfigForAppliance", "POST", content=b"{"), 400, "JSON")
    refused(bpl(server, "importConfigForAppliance"), 405, "POST")
    assert statuses(server, ["LS:IMP3"])["LS:IMP3"] == "Not being archived"
    # what one appliance exports, another with the same identity imports unchanged
    names = {ti["pvName"] for ti in bpl(server, "exportConfigForAppliance").json()}
    assert {"LS:IMP1", "LS:IMP2"} <= names


def test_appliance_properties_and_webapp_ready(server: Server) -> None:
    assert bpl(server, "getApplianceProperties").json() == {"minimum_sampling_period": "0.1"}
    for webapp in ("ENGINE", "ETL", "RETRIEVAL", "MGMT"):
        r = bpl(server, "webAppReady", params={"webapp": webapp})
        assert (r.status_code, r.content) == (200, b"")
    refused(bpl(server, "webAppReady"), 400, "webapp")
    refused(bpl(server, "webAppReady", params={"webapp": "engine"}), 400, "Unknown webapp")


# ---------------------------------------------------------------------- one PV's configuration
def test_modify_meta_fields(server: Server) -> None:
    def modify(*commands: str, pv: str = B) -> httpx.Response:
        return bpl(
            server, "modifyMetaFields", params=[("pv", pv), *(("command", c) for c in commands)]
        )

    r = modify("add,HIHI,LOLO")
    assert r.status_code == 200, r.text
    assert r.json() == {"pvName": B, "fields": "HIHI,LOLO"}
    assert bpl(server, "archivedPVs", "POST", json=[f"{B}.LOLO"]).json() == [f"{B}.LOLO"]
    # several commands apply in order; adding a field twice keeps one
    assert modify("remove,HIHI", "add,ADEL,LOLO,ADEL").json()["fields"] == "LOLO,ADEL"
    assert bpl(server, "getPVTypeInfo", params={"pv": B}).json()["archiveFields"] == [
        "LOLO",
        "ADEL",
    ]
    assert modify("clear", "add,MDEL").json()["fields"] == "MDEL"
    assert modify("clear").json() == {"pvName": B, "fields": ""}
    assert bpl(server, "getPVTypeInfo", params={"pv": B}).json()["archiveFields"] == []
    for commands, status, text in [
        (("add,HIHI", "append,LOLO"), 400, "Unknown command"),
        (("add,HI HI",), 400, "not a field name"),
        (("add,VAL",), 400, "VAL"),
        ((), 400, "command"),
    ]:
        refused(modify(*commands), status, text)
    # a refused request changed nothing (its first, valid command included)
    assert bpl(server, "getPVTypeInfo", params={"pv": B}).json()["archiveFields"] == []
    refused(modify("add,HIHI", pv="LS:NOPE"), 404, "not being archived")
    put_typeinfo(server, "LS:RUNNING", paused="false")
    refused(modify("add,HIHI", pv="LS:RUNNING"), 400, "Please pause the pv LS:RUNNING first")
    # an alias names its PV
    assert modify("add,HOPR", pv=ALIAS).json() == {"pvName": A, "fields": "HIHI,LOLO,HOPR"}


def test_restart_archive_workflow_aborts_the_requests(server: Server) -> None:
    gone = ["LS:GONE1", "LS:GONE2"]
    bpl(server, "restartArchivePVWorkflowThreadForThisAppliance")  # whatever other tests left
    r = bpl(server, "archivePV", params={"pv": ",".join(gone)})
    assert [row["status"] for row in r.json()] == ["Archive request submitted"] * 2
    assert set(statuses(server, gone).values()) == {"Initial sampling"}
    r = bpl(server, "restartArchivePVWorkflowThreadForThisAppliance")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok" and body["desc"].startswith("Aborted 2 archive requests")
    assert set(statuses(server, gone).values()) == {"Not being archived"}
    names = [row["pvName"] for row in bpl(server, "getNeverConnectedPVs").json()]
    assert not set(gone) & set(names)
    body = bpl(server, "restartArchivePVWorkflowThreadForThisAppliance").json()
    assert body["desc"].startswith("Aborted 0 archive requests")


def test_skip_alias_check(server: Server, ioc: IOC) -> None:
    """Two aliases of one record are requested while the IOC is down; one skips the alias
    check. When the IOC comes up, that one is archived under its own name and the other
    under the record's name (and becomes its alias). The workflow still works after the
    restart of the test before."""
    al1, al2, real = "LS:IOC:AL1", "LS:IOC:AL2", "LS:IOC:REAL"
    r = bpl(server, "archivePV", params={"pv": f"{al1},{al2}"})
    assert [row["status"] for row in r.json()] == ["Archive request submitted"] * 2
    r = bpl(server, "skipAliasCheck", params={"pv": al1})
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
    refused(bpl(server, "skipAliasCheck", params={"pv": A}), 400, "archived already")
    refused(bpl(server, "skipAliasCheck", params={"pv": "LS:NOPE"}), 404, "No archive request")
    refused(bpl(server, "skipAliasCheck"), 400, "pv")
    ioc.start()
    wait_status(server, [al1, al2], "Being archived", timeout=60)
    names = bpl(server, "getAllPVs", params={"limit": "-1"}).json()
    assert al1 in names and real in names and al2 not in names
    aliases = bpl(server, "getAllAliases").json()
    assert {"aliasName": al2, "srcPVName": real} in aliases
    assert al1 not in [a["aliasName"] for a in aliases]


def test_append_and_alias_pv(server: Server, storage: Path) -> None:
    """OLD's history before NEW's first sample, then all of NEW, end up in NEW, in the LTS
    (the store asked for); OLD is deleted and becomes an alias of NEW (with its own alias)."""
    first_new = history(NEW)[0][0]
    want = [x for x in history(OLD) if x[0] < first_new] + history(NEW)
    assert len(want) == 40 + 24 + 10 + 5
    assert retrieved(server, NEW) == history(NEW)
    r = bpl(server, "appendAndAliasPV", params={"olderpv": OLD, "newerpv": NEW, "storage": "LTS"})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "status": "ok",
        "desc": f"Appended the data of {OLD} to {NEW}; {OLD} is an alias of {NEW}",
        "deleteNewer": "ok",
        "deleteOlder": "ok",
        "addAlias": "ok",
        "beforeEventCount": str(len(want)),
        "afterEventCount": str(len(want)),
    }
    assert retrieved(server, NEW) == want
    assert retrieved(server, OLD) == want  # the old name is an alias now
    stores = served_stores(storage)
    assert [pf.start for pf in stores["LTS"].files_for_pv(NEW)] == [
        epoch("2020-01-01T00:00:00Z"),
        epoch("2021-01-01T00:00:00Z"),
    ]
    for name, st in stores.items():
        assert st.files_for_pv(OLD) == [], name
        if name != "LTS":
            assert st.files_for_pv(NEW) == [], name
        leftovers = [p for p in st.root.rglob("*") if "_appendAlias_" in p.name]
        assert leftovers == [], leftovers
    names = bpl(server, "getAllPVs", params={"limit": "-1"}).json()
    assert NEW in names and OLD not in names
    aliases = bpl(server, "getAllAliases").json()
    assert {"aliasName": OLD, "srcPVName": NEW} in aliases
    assert {"aliasName": OLD_ALIAS, "srcPVName": NEW} in aliases
    info = bpl(server, "getPVTypeInfo", params={"pv": NEW}).json()
    assert info["paused"] == "true"  # as the AA: the user resumes it


def test_append_and_alias_into_a_middle_store(server: Server, storage: Path) -> None:
    """storage=MTS: NEW2's data from the LTS and the STS moves into the MTS with OLD2's."""
    want = history(OLD2) + history(NEW2)
    r = bpl(server, "appendAndAliasPV", params={"olderpv": OLD2, "newerpv": NEW2, "storage": "MTS"})
    assert r.status_code == 200, r.text
    assert r.json()["afterEventCount"] == str(len(want))
    assert retrieved(server, NEW2) == want
    stores = served_stores(storage)
    assert stores["LTS"].files_for_pv(NEW2) == [] and stores["STS"].files_for_pv(NEW2) == []
    assert sum(1 for _ in stores["MTS"].read_all(NEW2)) == len(want)


def test_append_and_alias_refusals_change_nothing(server: Server) -> None:
    put_typeinfo(server, "LS:UNPAUSED", paused="false")
    put_typeinfo(server, "LS:INT", DBRType="DBR_SCALAR_INT")

    def call(older: str, newer: str, storage: str = "LTS") -> httpx.Response:
        params = {"olderpv": older, "newerpv": newer, "storage": storage}
        return bpl(server, "appendAndAliasPV", params=params)

    refused(
        bpl(server, "appendAndAliasPV", params={"newerpv": B, "storage": "LTS"}), 400, "olderpv"
    )
    refused(call("LS:NOPE", B), 404, "PV LS:NOPE is not being archived")
    refused(call(A, ALIAS), 400, "the same PV")
    refused(call("LS:UNPAUSED", B), 400, "Cannot append unless PV LS:UNPAUSED is paused.")
    refused(call(A, "LS:INT"), 400, "different DBR Types")
    refused(call(A, B, "XTS"), 400, "Cannot find storage with name XTS for pv LS:B")
    refused(call(A, B), 400, "no data for LS:A")
    names = bpl(server, "getAllPVs", params={"limit": "-1"}).json()
    assert {A, B, "LS:UNPAUSED", "LS:INT"} <= set(names)
    assert A not in [a["aliasName"] for a in bpl(server, "getAllAliases").json()]


def test_restart_starts_a_stopped_workflow_loop(tmp_path: Path) -> None:
    """The AA's reason for the action is a stuck workflow thread. Here the loop is an
    asyncio task: a stopped one (as after an unexpected error) is started again, a running
    one is kept (cancelling it mid-batch would lose track of the batch's PVs)."""
    from pvarchiver.engine.writer import Engine
    from pvarchiver.mgmt.engine_link import EngineLink
    from pvarchiver.mgmt.manager import Manager, MgmtConfig
    from pvarchiver.mgmt.policies import Policies
    from pvarchiver.mgmt.registry import Registry

    from .helpers.stores import make_store

    async def main() -> None:
        sts = make_store(tmp_path, "STS", "PARTITION_HOUR")
        link = EngineLink(Engine(sts), [sts])
        registry = Registry(tmp_path / "registry.sqlite")
        config = MgmtConfig(storage_root=tmp_path)
        manager = Manager(registry, link, Policies(None), config, [])
        assert manager.restart_workflow() == (0, False)  # never started: nothing to restart
        await manager.start(None)  # type: ignore[arg-type]  # no CA: no request is measured
        try:
            assert manager.restart_workflow() == (0, False)  # running: kept
            await manager.stop()  # the loop has ended
            assert manager.restart_workflow() == (0, True)
            assert manager.restart_workflow() == (0, False)  # the new one runs
        finally:
            await manager.stop()
            registry.close()

    asyncio.run(main())


def test_an_interrupted_append_is_finished_by_the_next_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The data step, without a server: a swap that stops after its two newest files,
    and a copy a crash left behind, are both put right by calling again; every sample of
    both PVs ends in the newer PV once."""
    from pvarchiver.mgmt import append_alias as aa
    from pvarchiver.mgmt.rename import copy_pv_data

    from .helpers.stores import make_store

    sts = make_store(tmp_path, "STS", "PARTITION_HOUR")
    mts = make_store(tmp_path, "MTS", "PARTITION_DAY")
    chain = [sts, mts]
    day = epoch("2022-03-01T00:00:00Z")
    dbl = PayloadType.SCALAR_DOUBLE
    older = [Sample(day + i * 7200, 0, float(i)) for i in range(48)]  # 4 days in the MTS
    newer = [Sample(day + 3 * 86400 + i * 600, 0, 100.0 + i) for i in range(20)]  # overlaps
    append_samples(mts, "IA:OLD", dbl, older)
    append_samples(mts, "IA:NEW", dbl, newer[:10])
    append_samples(sts, "IA:NEW", dbl, newer[10:])
    want = sorted({s.timestamp: s.val for s in older if s.timestamp < newer[0].timestamp}.items())
    want += [(s.timestamp, s.val) for s in newer]
    # a copy a crashed call left: removed, not counted
    append_samples(mts, aa.temp_name("IA:NEW"), dbl, [Sample(day, 0, -1.0)])

    def newest_two_then_fail(stores: list[PlainPBStore], old: str, new: str, **kw: bool) -> int:
        """The swap got through the copy's two newest files (of four), then stopped."""
        assert kw == {"newest_first": True}  # the order that makes this state the only one
        for pf in stores[0].files_for_pv(old)[:-2]:
            pf.path.unlink()
        copy_pv_data(stores, old, new, **kw)
        raise OSError("interrupted")

    monkeypatch.setattr(aa, "copy_pv_data", newest_two_then_fail)
    with pytest.raises(OSError):
        aa.append_older_into_newer(
            chain, chain, mts, "IA:OLD", "IA:NEW", aa.temp_name("IA:NEW"), dbl
        )
    monkeypatch.undo()
    got = list(aa.merged(chain, "IA:NEW", None))
    assert len(got) > len(newer)  # part of the older history is in the newer PV already
    counts = aa.append_older_into_newer(
        chain, chain, mts, "IA:OLD", "IA:NEW", aa.temp_name("IA:NEW"), dbl
    )
    assert counts.written == len(want)
    assert [(s.timestamp, s.val) for s in mts.read_all("IA:NEW")] == want
    assert sts.files_for_pv("IA:NEW") == []
    assert mts.files_for_pv(aa.temp_name("IA:NEW")) == []
    assert len(mts.files_for_pv("IA:OLD")) == 4  # the older PV is the action's to delete
