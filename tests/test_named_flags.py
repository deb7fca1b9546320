"""Named flags: the AA's three actions against a real server, their persistence in the
registry across a restart, the AA's flags file, and the semantics ETL relies on
(``true``/``false`` literals, unknown flags false, ``Boolean.parseBoolean`` values)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from pvarchiver.mgmt.named_flags import NamedFlags, load_flags_file, parse_boolean
from pvarchiver.mgmt.registry import REGISTRY_FILENAME, Registry
from pvarchiver.settings import load_settings

from .helpers.mgmt import bpl
from .http_server import running_server

FLAG_PROP = "org.epics.archiverappliance.config.NamedFlags.readFromFile"


# ---------------------------------------------------------------------- the class
def test_semantics_in_memory() -> None:
    f = NamedFlags()
    assert f.get("NEVER_SET") is False
    assert f.get("true") is True and f.get("TRUE") is True and f.get("False") is False
    f.set("SKIP_MTS_FOR_ETL", True)
    f.set("other", False)
    assert f.get("SKIP_MTS_FOR_ETL") is True
    assert f.get("skip_mts_for_etl") is False  # names are exact, as the AA's map keys
    assert f.all() == {"SKIP_MTS_FOR_ETL": True, "other": False}
    f.set("SKIP_MTS_FOR_ETL", False)
    assert f.get("SKIP_MTS_FOR_ETL") is False
    for bad in ("", "true", "FALSE"):
        with pytest.raises(ValueError):
            f.set(bad, False)
    assert f.get("true") is True


def test_parse_boolean_is_javas() -> None:
    assert parse_boolean("true") and parse_boolean("TrUe")
    for text in ("yes", "1", "on", " true", "", None, "false"):
        assert not parse_boolean(text), text


def test_get_while_set_from_other_threads() -> None:
    """Readers on other threads (the ETL worker) always get a bool and see each flag's
    last value once the writers are done."""
    f = NamedFlags()
    errors: list[object] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            for i in range(50):
                v = f.get(f"F{i}")
                if v is not True and v is not False:
                    errors.append(v)

    def write(k: int) -> None:
        for n in range(200):
            f.set(f"F{(n + k) % 50}", (n + k) % 2 == 0)
        f.set(f"W{k}", True)

    readers = [threading.Thread(target=read) for _ in range(3)]
    writers = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert not errors
    assert all(f.get(f"W{k}") for k in range(4))
    assert len(f.all()) == 54


def test_persisted_in_the_registry(tmp_path: Path) -> None:
    reg = Registry(tmp_path / REGISTRY_FILENAME)
    NamedFlags(reg).set("A", True)
    NamedFlags(reg).set("B", False)
    reg.close()
    reg = Registry(tmp_path / REGISTRY_FILENAME)
    assert NamedFlags(reg).all() == {"A": True, "B": False}
    reg.close()
    with sqlite3.connect(tmp_path / REGISTRY_FILENAME) as db:
        rows = dict(db.execute("SELECT flagName, flagValue FROM NamedFlags"))
    assert rows == {"A": "true", "B": "false"}


def test_registry_without_the_table_gets_it(tmp_path: Path) -> None:
    """A registry written before named flags existed (or by the AA's schema) opens, keeps its
    rows and gains the table."""
    path = tmp_path / REGISTRY_FILENAME
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE PVAliases (pvName TEXT NOT NULL PRIMARY KEY, realName TEXT NOT NULL, "
            "last_modified TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
        )
        db.execute("INSERT INTO PVAliases (pvName, realName) VALUES ('al', 'real')")
    reg = Registry(path)
    assert reg.aliases() == {"al": "real"}
    assert reg.named_flags() == {}
    reg.put_named_flag("X", True)
    reg.close()
    assert Registry(path).named_flags() == {"X": True}


def test_failed_write_changes_nothing(tmp_path: Path) -> None:
    """A flag the registry could not store is not reported as set."""
    reg = Registry(tmp_path / REGISTRY_FILENAME)
    flags = NamedFlags(reg)
    flags.set("KEPT", True)
    reg.close()  # every later write fails
    with pytest.raises(sqlite3.Error):
        flags.set("LOST", True)
    assert flags.all() == {"KEPT": True}
    assert flags.get("LOST") is False


def test_flags_file(tmp_path: Path) -> None:
    path = tmp_path / "flags.properties"
    path.write_text("# a comment\nA=true\nB = TRUE\nC=yes\nD: false\n", "latin-1")
    assert load_flags_file(path) == {"A": True, "B": True, "C": False, "D": False}
    assert load_flags_file(tmp_path / "missing.properties") == {}
    reg = Registry(tmp_path / REGISTRY_FILENAME)
    NamedFlags(reg).set("A", False)
    NamedFlags(reg).set("E", True)
    both = NamedFlags.open(reg, path)
    assert both.all() == {"A": True, "B": True, "C": False, "D": False, "E": True}
    reg.close()


def test_settings_name_the_flags_file(tmp_path: Path) -> None:
    props = tmp_path / "archappl.properties"
    props.write_text(f"{FLAG_PROP}=/site/flags.properties\n")
    s = load_settings({"ARCHAPPL_PROPERTIES_FILENAME": str(props)}, storage=str(tmp_path / "s"))
    assert s.mgmt.named_flags_file == Path("/site/flags.properties")
    assert load_settings({}, storage=str(tmp_path / "s")).mgmt.named_flags_file is None


# ---------------------------------------------------------------------- the server
def test_actions_and_restart(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    with running_server(storage) as base:
        assert bpl(base, "getAllNamedFlags").json() == {}
        r = bpl(base, "getNamedFlag", params={"name": "SKIP_MTS_FOR_ETL"})
        assert r.status_code == 200 and r.json() == {"SKIP_MTS_FOR_ETL": False}
        assert bpl(base, "getNamedFlag", params={"name": "TRUE"}).json() == {"TRUE": True}

        def set_flag(name: str, value: str) -> dict[str, object]:
            r = bpl(base, "setNamedFlag", params={"name": name, "value": value})
            assert r.status_code == 200, r.text
            return r.json()  # type: ignore[no-any-return]

        assert set_flag("SKIP_MTS_FOR_ETL", "true") == {"status": "ok"}
        assert set_flag("moveIntoLTS", "TRUE") == {"status": "ok"}
        assert set_flag("odd", "yes") == {"status": "ok"}  # parseBoolean: false
        set_flag("flipped", "true")
        set_flag("flipped", "false")
        # a POSTed form works as the query string does
        r = bpl(base, "setNamedFlag", "POST", data={"name": "posted", "value": "true"})
        assert r.status_code == 200, r.text
        r = bpl(base, "getNamedFlag", params={"name": "SKIP_MTS_FOR_ETL"})
        assert r.json() == {"SKIP_MTS_FOR_ETL": True}
        expected = {
            "SKIP_MTS_FOR_ETL": True,
            "moveIntoLTS": True,
            "odd": False,
            "flipped": False,
            "posted": True,
        }
        assert bpl(base, "getAllNamedFlags").json() == expected

        # bad input: 400 with the reason, nothing stored
        for action, params in (
            ("getNamedFlag", {}),
            ("getNamedFlag", {"name": ""}),
            ("setNamedFlag", {"value": "true"}),
            ("setNamedFlag", {"name": "x"}),
            ("setNamedFlag", {"name": "x", "value": ""}),
            ("setNamedFlag", {"name": "true", "value": "false"}),
            ("setNamedFlag", {"name": "x", "value": "true", "nosuch": "1"}),
        ):
            r = bpl(base, action, params=params)
            assert r.status_code == 400, (action, params, r.text)
            assert r.json()["status"] == "error" and r.json()["validation"], r.text
        assert (
            "Missing parameter value"
            in bpl(base, "setNamedFlag", params={"name": "x"}).json()["validation"]
        )
        assert bpl(base, "getAllNamedFlags").json() == expected

    # a restart on the same storage folder: every flag is still there
    with running_server(storage) as base:
        assert bpl(base, "getAllNamedFlags").json() == expected
        assert bpl(base, "getNamedFlag", params={"name": "moveIntoLTS"}).json() == {
            "moveIntoLTS": True
        }


def test_flags_file_and_access_check(tmp_path: Path) -> None:
    """The AA's flags file named in archappl.properties is loaded at start over the stored
    flags; setNamedFlag is a state-changing action, so the mgmt token guards it."""
    storage = tmp_path / "storage"
    flags = tmp_path / "flags.properties"
    flags.write_text("FROM_FILE=true\nSTORED=true\n")
    props = tmp_path / "archappl.properties"
    props.write_text(f"{FLAG_PROP}={flags}\n")
    with running_server(storage) as base:
        assert bpl(base, "setNamedFlag", params={"name": "STORED", "value": "false"}).is_success
        assert bpl(base, "setNamedFlag", params={"name": "ONLY_DB", "value": "true"}).is_success
    env = {"ARCHAPPL_PROPERTIES_FILENAME": str(props), "PVARCHIVER_MGMT_TOKEN": "s3cret"}
    with running_server(storage, env) as base:
        got = bpl(base, "getAllNamedFlags").json()
        assert got == {"FROM_FILE": True, "STORED": True, "ONLY_DB": True}
        r = bpl(base, "setNamedFlag", params={"name": "STORED", "value": "false"})
        assert r.status_code == 403, r.text
        r = bpl(
            base,
            "setNamedFlag",
            params={"name": "STORED", "value": "false"},
            headers={"Authorization": "Bearer s3cret"},
        )
        assert r.status_code == 200, r.text
        assert bpl(base, "getNamedFlag", params={"name": "STORED"}).json() == {"STORED": False}
