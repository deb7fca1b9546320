"""Pure parts of mgmt: typeinfo encoding, name input forms, policies, registry, typeinfo build."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest

from pvarchiver.ca import dbr
from pvarchiver.mgmt.metaget import Measurement
from pvarchiver.mgmt.policies import Policies, PolicyError, check_result
from pvarchiver.mgmt.pvinput import (
    InputError,
    archive_specs_from_json,
    archive_target,
    names_from_body,
    split_field,
)
from pvarchiver.mgmt.registry import Registry
from pvarchiver.mgmt.typeinfo import PVTypeInfo, java_double, java_float
from pvarchiver.mgmt.workflow import ArchiveRequest, build_typeinfo, policy_input

PROTOTYPE = {  # the AA's test resource PVTypeInfoPrototype.json (abridged), as in aa.md §1.5
    "pvName": "UnitTestNoNamingConvention:inactive1",
    "DBRType": "DBR_SCALAR_DOUBLE",
    "scalar": "true",
    "elementCount": "1",
    "applianceIdentity": "appliance0",
    "hostName": "mshankar-GNOME3-VirtualBox",
    "lowerAlarmLimit": "NaN",
    "lowerCtrlLimit": "0.0",
    "lowerDisplayLimit": "0.0",
    "lowerWarningLimit": "-0.7",
    "upperAlarmLimit": "NaN",
    "upperCtrlLimit": "0.0",
    "upperDisplayLimit": "0.0",
    "upperWarningLimit": "0.5",
    "precision": "0.0",
    "units": "",
    "hasReducedDataSet": "false",
    "computedEventRate": "0.016666668",
    "computedStorageRate": "0.28333333",
    "computedBytesPerEvent": "17",
    "userSpecifiedEventRate": "0.0",
    "creationTime": "2014-12-11T14:49:58.523Z",
    "modificationTime": "2014-12-11T14:49:58.523Z",
    "paused": "false",
    "samplingMethod": "MONITOR",
    "samplingPeriod": "1.0",
    "extraFields": {
        "NAME": "UnitTestNoNamingConvention:inactive1",
        "RTYP": "ai",
        "ADEL": "0.0",
        "MDEL": "0.0",
        "SCAN": "0.0",
    },
    "dataStores": ["pb://localhost?name=STS&rootFolder=${ARCHAPPL_SHORT_TERM_FOLDER}"],
    "archiveFields": ["LOLO", "HIGH", "LOW", "LOPR", "HOPR", "HIHI"],
    "someFutureKey": "kept",
}


def test_typeinfo_round_trips_the_aa_prototype_exactly() -> None:
    info = PVTypeInfo.from_json(PROTOTYPE)
    assert info.paused is False and info.lowerWarningLimit == -0.7
    assert math.isnan(info.upperAlarmLimit)
    assert info.to_json() == PROTOTYPE


def test_every_typeinfo_value_is_a_string() -> None:
    j = PVTypeInfo("A:B", paused=True, samplingPeriod=0.1).to_json()
    for v in j.values():
        assert isinstance(v, str | dict | list)
    assert j["paused"] == "true" and j["samplingPeriod"] == "0.1"


def test_bad_typeinfo_json_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="pvName"):
        PVTypeInfo.from_json({"DBRType": "x"})
    with pytest.raises(ValueError, match="samplingPeriod"):
        PVTypeInfo.from_json({"pvName": "A", "samplingPeriod": "fast"})
    with pytest.raises(ValueError, match="dataStores"):
        PVTypeInfo.from_json({"pvName": "A", "dataStores": "pb://x"})


@pytest.mark.parametrize(
    ("x", "text"),
    [(1.0, "1.0"), (0.0, "0.0"), (1e-5, "1.0E-5"), (12345678.0, "1.2345678E7"), (-0.7, "-0.7")],
)
def test_java_double(x: float, text: str) -> None:
    assert java_double(x) == text


def test_java_float_is_shortest_32_bit() -> None:
    assert java_float(1 / 60) == "0.016666668"
    assert java_float(17 / 60) == "0.28333333"


def test_names_from_body_three_forms() -> None:
    assert names_from_body("application/json", b'["A:1", {"pv": "B:2"}]') == ["A:1", "B:2"]
    assert names_from_body("text/plain", b"A:1\n\n B:2 \n") == ["A:1", "B:2"]
    assert names_from_body("application/x-www-form-urlencoded", b"pv=A:1,B:2") == ["A:1", "B:2"]
    with pytest.raises(InputError):
        names_from_body("application/json", b"[1, 2")
    with pytest.raises(InputError):
        names_from_body("application/json", b"[3]")


def test_archive_targets_follow_the_aa_field_rules() -> None:
    fields = ["HIHI", "LOLO"]
    assert archive_target("X:Y.VAL", fields).pv == "X:Y"
    t = archive_target("X:Y.HIHI", fields)
    assert (t.pv, t.field) == ("X:Y", "HIHI")
    t = archive_target("X:Y.DESC", fields)  # not a stream field: a PV of its own
    assert (t.pv, t.field) == ("X:Y.DESC", None)
    assert archive_target("pva://X:Y", fields).pva
    assert split_field("X:Y.NAME$") == ("X:Y.NAME$", None)
    for bad in ("", "has space", "x" * 600, "bad\x01char"):
        with pytest.raises(InputError):
            archive_target(bad, fields)


def test_archive_specs_from_json_checks_keys_and_values() -> None:
    specs = archive_specs_from_json(
        b'[{"pv": "A", "samplingperiod": "2.0", "samplingmethod": "scan", "policy": "BPMS"}, "B"]'
    )
    assert (specs[0].samplingperiod, specs[0].samplingmethod, specs[0].policy) == (
        2.0,
        "SCAN",
        "BPMS",
    )
    assert specs[1].pv == "B"
    for body, msg in [
        (b'[{"pv": "A", "bogus": 1}]', "unknown key"),
        (b'[{"pv": "A", "samplingperiod": "abc"}]', "not a number"),
        (b'[{"pv": "A", "samplingperiod": "-1"}]', "positive"),
        (b'[{"pv": "A", "samplingmethod": "SOMETIMES"}]', "MONITOR or SCAN"),
        (b'[{"samplingperiod": "1"}]', "no pv"),
        (b'{"pv": "A"}', "list"),
    ]:
        with pytest.raises(InputError, match=msg):
            archive_specs_from_json(body)


def test_default_policy_behaves_as_the_aa_default() -> None:
    p = Policies()
    assert set(p.policy_list()) == {"Default", "BPMS", "2HzPVs", "3DaysMTSOnly"}
    base = {"pvName": "X", "dbrtype": "DBR_SCALAR_DOUBLE", "elementCount": 1, "eventCount": 1}
    r = p.determine({**base, "eventRate": 0.5, "storageRate": 10, "RTYP": "ao"})
    assert (r.policyName, r.samplingMethod, r.samplingPeriod) == ("Default", "MONITOR", 1.0)
    assert r.archiveFields == ["HIHI", "HIGH", "LOW", "LOLO", "LOPR", "HOPR", "DRVH", "DRVL"]
    assert r.dataStores[0].startswith("pb://localhost?name=STS")
    assert p.determine({**base, "eventRate": 10.0, "storageRate": 210}).policyName == "2HzPVs"
    bpm = p.determine({**base, "pvName": "BPMS:1", "eventRate": 1.0, "storageRate": 70.0})
    assert (bpm.policyName, bpm.samplingPeriod) == ("BPMS", 2.0)
    three = p.determine({**base, "eventRate": 0.1, "storageRate": 1, "policyName": "3DaysMTSOnly"})
    assert three.dataStores[2].startswith("blackhole://")
    assert p.determine({**base, "eventRate": 0.1, "storageRate": 1}).archiveFields == []


def test_broken_policy_files_give_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "policies.py"
    bad.write_text("def getPolicyList(:\n")
    with pytest.raises(PolicyError, match="failed to load"):
        Policies(bad).determine({"pvName": "X"})
    bad.write_text(
        "def getPolicyList():\n    return {'A': 'a'}\ndef determinePolicy(i):\n    1/0\n"
    )
    with pytest.raises(PolicyError, match="ZeroDivisionError"):
        Policies(bad).determine({"pvName": "X"})
    with pytest.raises(PolicyError, match="lacks determinePolicy"):
        bad.write_text("def getPolicyList():\n    return {}\n")
        Policies(bad).policy_list()
    with pytest.raises(PolicyError, match="cannot read"):
        Policies(tmp_path / "missing.py").policy_list()
    for answer, msg in [
        ({}, "no samplingPeriod"),
        ({"samplingPeriod": 0}, "positive"),
        ({"samplingPeriod": 1, "samplingMethod": "X"}, "samplingMethod"),
        ({"samplingPeriod": 1, "dataStores": "pb://"}, "dataStores"),
        (None, "must return a dict"),
    ]:
        with pytest.raises(PolicyError, match=msg):
            check_result(answer)


def test_registry_persists_in_the_aa_tables(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite"
    reg = Registry(path)
    with reg.batch() as b:
        for i in range(100):
            b.put_typeinfo(PVTypeInfo(f"PV:{i:03d}"))
        b.add_alias("AL:1", "PV:001")
        b.put_request("REQ:1", ArchiveRequest("REQ:1").to_params())
        b.put_external_server("srv", "http://x")
    reg.close()
    db = sqlite3.connect(path)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"PVTypeInfo", "PVAliases", "ArchivePVRequests", "ExternalDataServers"} <= tables
    cols = [r[1] for r in db.execute("PRAGMA table_info(PVTypeInfo)")]
    assert cols == ["pvName", "typeInfoJSON", "last_modified"]
    row = db.execute("SELECT typeInfoJSON FROM PVTypeInfo WHERE pvName='PV:005'").fetchone()
    assert json.loads(row[0])["paused"] == "false"
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    reg = Registry(path)
    assert len(reg.names()) == 100 and reg.real_name("AL:1") == "PV:001"
    assert reg.has_request("REQ:1") and reg.external_servers() == {"srv": "http://x"}
    reg.delete_requests(["REQ:1"])
    reg.remove_alias("AL:1")
    reg.close()
    reg = Registry(path)
    assert not reg.has_request("REQ:1") and reg.aliases() == {}


def test_registry_batch_is_all_or_nothing(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "r.sqlite")
    with pytest.raises(RuntimeError), reg.batch() as b:
        b.put_typeinfo(PVTypeInfo("A"))
        raise RuntimeError("boom")
    assert reg.names() == []
    reg.close()
    assert Registry(tmp_path / "r.sqlite").names() == []


def test_build_typeinfo_from_measurement_and_policy() -> None:
    m = Measurement("X:AI", connected_epoch=1.0, native_type=6, count=1, host="h:1")
    m.events, m.bytes, m.seconds = 20, 420, 2.0
    m.fields = {"NAME": "X:AI", "RTYP": "ai", "MDEL": "0.5"}
    m.ctrl = dbr.Reading(value=0.0, units="mm", precision=3, upper_alarm_limit=9.0)
    req = ArchiveRequest("X:AI", archiveFields=["DRVH"])
    pin = policy_input(req, m)
    assert pin["eventRate"] == 10.0 and pin["storageRate"] == 210.0 and pin["MDEL"] == 0.5
    assert pin["dbrtype"] == "DBR_SCALAR_DOUBLE" and pin["RTYP"] == "ai"
    pol = Policies().determine(pin)
    info = build_typeinfo(req, m, pol, identity="app0", default_stores=["pb://d"])
    j = info.to_json()
    assert j["upperAlarmLimit"] == "9.0" and j["units"] == "mm" and j["precision"] == "3.0"
    assert j["computedEventRate"] == "10.0" and j["computedBytesPerEvent"] == "21"
    assert j["policyName"] == "2HzPVs" and j["applianceIdentity"] == "app0"
    assert info.archiveFields[-1] == "DRVH" and "HIHI" in info.archiveFields
    # a user-given period wins over the policy, floored at the AA's minimum
    req2 = ArchiveRequest("X:AI", samplingMethod="SCAN", samplingPeriod=0.01)
    info2 = build_typeinfo(req2, m, pol, identity="a", default_stores=[])
    assert (info2.samplingMethod, info2.samplingPeriod) == ("SCAN", 0.1)


def test_a_corrupt_registry_file_is_refused_not_overwritten(tmp_path: Path) -> None:
    from pvarchiver.mgmt.registry import RegistryError

    path = tmp_path / "registry.sqlite"
    junk = b"this is not a database" * 100
    path.write_bytes(junk)
    with pytest.raises(RegistryError, match="cannot open the PV registry"):
        Registry(path)
    assert path.read_bytes() == junk


def test_an_unreadable_typeinfo_row_is_kept_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite"
    Registry(path).put_typeinfos([PVTypeInfo("GOOD:1")])
    db = sqlite3.connect(path)
    db.execute("INSERT INTO PVTypeInfo (pvName, typeInfoJSON) VALUES ('BAD:1', '{oops')")
    db.commit()
    db.close()
    reg = Registry(path)
    assert reg.names() == ["GOOD:1"]
    assert reg.raw_rows("PVTypeInfo")["BAD:1"] == "{oops"  # still there for a human to fix
