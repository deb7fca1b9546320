"""PV lists, per-appliance actions and appliance configuration of the management BPL, end
to end against a real ``pvarchiver serve`` (issue 16).

One server for the module. Its PVs are registered with putPVTypeInfo (paused, so no
Channel Access is needed) and one archive request never connects (no IOC serves it), so
it stays in the workflow. The tests that need a connected PV start a real softIoc.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from .helpers.mgmt import bpl, ca_env, statuses, wait_status
from .http_server import Server, running_server
from .ioc import IOC

A, B, C = "LS:A", "LS:B", "LS:C"
ALIAS = "LS:A_ALIAS"
PENDING = "LS:PENDING"  # no IOC serves it: stays in Initial sampling

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


@pytest.fixture(scope="module")
def ioc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IOC]:
    """The IOC of the alias tests, created (its ports chosen) but not started: the server
    points at it from the start, and a test starts it when it wants the PVs to connect."""
    ioc = IOC(IOC_DB, tmp_path_factory.mktemp("ioc"))
    try:
        yield ioc
    finally:
        ioc.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, ioc: IOC) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("lists")
    with running_server(tmp / "storage", ca_env(ioc)) as base:
        put_typeinfo(base, A, archiveFields=["HIHI", "LOLO"])
        put_typeinfo(base, B)
        put_typeinfo(base, C)
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
