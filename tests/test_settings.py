"""Settings: where each value comes from, what a bad value does, that the reference table
lists every setting, and that library code reads the environment only through them."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import re
from pathlib import Path

import pytest

from pvarchiver import settings as settings_module
from pvarchiver.properties import PropertiesError
from pvarchiver.settings import (
    DEFAULT_MAX_BODY,
    GatewaySettings,
    Settings,
    load_gateway_settings,
    load_settings,
)
from pvarchiver.storage.naming import PROP_TERMINATOR
from pvarchiver.storage.url import parse_store_url

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "pvarchiver"


def test_defaults_with_an_empty_environment(tmp_path: Path) -> None:
    s = load_settings({}, storage=str(tmp_path / "st"))
    assert s.storage.root == tmp_path / "st"
    roots = [parse_store_url(u).root_folder for u in s.storage.store_urls]
    assert roots == [tmp_path / "st" / d for d in ("sts", "mts", "lts")]
    assert s.storage.properties_file == "" and s.storage.naming.terminator is None
    assert (s.http.host, s.http.port, s.http.mgmt_max_body) == ("0.0.0.0", 17665, DEFAULT_MAX_BODY)
    assert s.http.mgmt_allow_hosts == () and s.http.mgmt_token == ""
    m = s.mgmt
    assert (m.identity, m.policies_file) == ("appliance0", None)
    assert (m.initial_sampling_seconds, m.abort_request_minutes, m.storage_scan_seconds) == (
        3.0,
        1440.0,
        60.0,
    )
    assert s.ca.env == {} and s.archive == ()
    assert (s.journal.folder, s.journal.fsync_seconds) == (s.storage.root / "journal", 1.0)
    off = load_settings({"PVARCHIVER_JOURNAL": "off"}, storage=str(tmp_path / "st"))
    assert off.journal.folder is None
    cli = load_settings(
        {"PVARCHIVER_JOURNAL_FSYNC_SECONDS": "5"},
        storage=str(tmp_path / "st"),
        journal=str(tmp_path / "j"),
        journal_fsync=0,
    )
    assert (cli.journal.folder, cli.journal.fsync_seconds) == (tmp_path / "j", 0)
    assert s.gateway == GatewaySettings()


def test_command_line_wins_over_environment(tmp_path: Path) -> None:
    env = {
        "PVARCHIVER_STORAGE": str(tmp_path / "from-env"),
        "PVARCHIVER_INITIAL_SAMPLING_SECONDS": "7",
    }
    assert load_settings(env).storage.root == tmp_path / "from-env"
    assert load_settings(env).mgmt.initial_sampling_seconds == 7.0
    s = load_settings(env, storage=str(tmp_path / "arg"), initial_sampling=0.5, port=1234)
    assert s.storage.root == tmp_path / "arg" and s.mgmt.initial_sampling_seconds == 0.5
    assert s.http.port == 1234


def test_environment_values(tmp_path: Path) -> None:
    props = tmp_path / "archappl.properties"
    props.write_text(f"{PROP_TERMINATOR}=;\n")
    env = {
        "ARCHAPPL_LONG_TERM_FOLDER": str(tmp_path / "big" / "lts"),
        "ARCHAPPL_PROPERTIES_FILENAME": str(props),
        "ARCHAPPL_MYIDENTITY": "app7",
        "ARCHAPPL_POLICIES": str(tmp_path / "policies.py"),
        "PVARCHIVER_ABORT_REQUEST_MINUTES": "5",
        "PVARCHIVER_STORAGE_SCAN_SECONDS": "-3",
        "PVARCHIVER_MGMT_MAX_BODY": "1000",
        "PVARCHIVER_MGMT_ALLOW_HOSTS": "127.0.0.1, 10.0.0.0/8 ::1",
        "PVARCHIVER_MGMT_TOKEN": "s3cret",
        "EPICS_CA_ADDR_LIST": "127.0.0.1:5999",
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
        "HOME": "/not/a/setting",
    }
    s = load_settings(env, storage=str(tmp_path / "st"))
    roots = [parse_store_url(u).root_folder for u in s.storage.store_urls]
    assert roots == [tmp_path / "st" / "sts", tmp_path / "st" / "mts", tmp_path / "big" / "lts"]
    assert s.storage.naming.terminator == ";" and s.storage.properties_file == str(props)
    assert s.mgmt.identity == "app7" and s.mgmt.policies_file == tmp_path / "policies.py"
    assert s.mgmt.abort_request_minutes == 5.0 and s.mgmt.storage_scan_seconds == 0.0
    assert s.http.mgmt_max_body == 1000 and s.http.mgmt_token == "s3cret"
    assert s.http.mgmt_allow_hosts == (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    assert dict(s.ca.env) == {
        "EPICS_CA_ADDR_LIST": "127.0.0.1:5999",
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
    }
    ca = s.ca.config()
    assert ca.addr_list == [("127.0.0.1", 5999)] and not ca.auto_addr_list


def test_bad_values(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    st = str(tmp_path / "st")
    with caplog.at_level(logging.ERROR):
        s = load_settings(
            {
                "PVARCHIVER_INITIAL_SAMPLING_SECONDS": "soon",
                "PVARCHIVER_MGMT_ALLOW_HOSTS": "10.1.2.0/24, nonsense",
            },
            storage=st,
        )
    # a tuning number that is not one: logged, the default used (as before Settings)
    assert s.mgmt.initial_sampling_seconds == 3.0
    assert "PVARCHIVER_INITIAL_SAMPLING_SECONDS is not a number" in caplog.text
    assert s.http.mgmt_allow_hosts == (ipaddress.ip_network("10.1.2.0/24"),)
    assert "'nonsense' is not an address" in caplog.text
    with pytest.raises(ValueError, match="PVARCHIVER_MGMT_MAX_BODY must be a whole number"):
        load_settings({"PVARCHIVER_MGMT_MAX_BODY": "lots"}, storage=st)
    with pytest.raises(PropertiesError, match="no such file"):
        load_settings({"ARCHAPPL_PROPERTIES_FILENAME": str(tmp_path / "typo")}, storage=st)
    with pytest.raises(ValueError, match="one character"):
        props = tmp_path / "p.properties"
        props.write_text(f"{PROP_TERMINATOR}=ab\n")
        load_settings({"ARCHAPPL_PROPERTIES_FILENAME": str(props)}, storage=st)
    with pytest.raises(ValueError, match="PVARCHIVER_GW_BATCH"):
        load_gateway_settings({"PVARCHIVER_GW_BATCH": "x"})
    assert load_gateway_settings({"PVARCHIVER_GW_RUN_BATCH": "8"}).run_batch == 8


def test_write_period_and_health_thresholds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    st = str(tmp_path / "st")
    s = load_settings({}, storage=st)
    assert s.engine.seconds_to_buffer == 10.0
    assert (s.health.low_space_percent, s.health.low_space_bytes) == (5.0, 1 << 30)
    assert s.health.unhealthy_after_seconds == 60.0
    props = tmp_path / "archappl.properties"
    props.write_text(f"{settings_module.PROP_SECONDS_TO_BUFFER}=5\n")
    from_file = {"ARCHAPPL_PROPERTIES_FILENAME": str(props)}
    assert load_settings(from_file, storage=st).engine.seconds_to_buffer == 5.0
    env = {
        **from_file,
        "PVARCHIVER_SECONDS_TO_BUFFER": "2",
        "PVARCHIVER_LOW_SPACE_PERCENT": "10",
        "PVARCHIVER_LOW_SPACE_BYTES": "512 MiB",
        "PVARCHIVER_UNHEALTHY_AFTER_SECONDS": "120",
    }
    s = load_settings(env, storage=st)
    assert s.engine.seconds_to_buffer == 2.0  # the variable wins over the file
    assert (s.health.low_space_percent, s.health.low_space_bytes) == (10.0, 512 << 20)
    assert s.health.unhealthy_after_seconds == 120.0
    assert [settings_module.parse_size(t) for t in ("0", "1GiB", "1g", "2k", "3TB", "100")] == [
        0,
        1 << 30,
        1 << 30,
        2048,
        3 << 40,
        100,
    ]
    with caplog.at_level(logging.ERROR):
        bad = load_settings(
            {
                "PVARCHIVER_SECONDS_TO_BUFFER": "0.1",
                "PVARCHIVER_LOW_SPACE_PERCENT": "150",
                "PVARCHIVER_LOW_SPACE_BYTES": "lots",
                "PVARCHIVER_UNHEALTHY_AFTER_SECONDS": "-1",
            },
            storage=st,
        )
    # logged, and a value that keeps archiving: a typo here must not stop the archiver
    assert bad.engine.seconds_to_buffer == 1.0
    assert bad.health == settings_module.HealthSettings()
    for text in ("at least 1 s", "0-100", "not a size", "must not be negative"):
        assert text in caplog.text, text


def test_demo_copies(tmp_path: Path) -> None:
    s = load_settings({"EPICS_CA_ADDR_LIST": "10.0.0.1"}, storage=str(tmp_path), archive=["A"])
    t = s.with_ca_env({"EPICS_CA_ADDR_LIST": "10.0.0.1 127.0.0.1:6000"}).with_archive(["B", "C"])
    assert t.archive == ("A", "B", "C") and t.ca.env["EPICS_CA_ADDR_LIST"].endswith(":6000")
    assert s.archive == ("A",) and s.ca.env["EPICS_CA_ADDR_LIST"] == "10.0.0.1"  # unchanged


def _field_paths(cls: type, prefix: str = "") -> list[str]:
    """``group.field`` for every field of a settings group; other types are leaves."""
    out = []
    for f in dataclasses.fields(cls):
        # annotations are strings here (from __future__ import annotations)
        sub = getattr(settings_module, str(f.type), None)
        if isinstance(sub, type) and sub.__module__ == settings_module.__name__:
            out += _field_paths(sub, f"{prefix}{f.name}.")
        else:
            out.append(prefix + f.name)
    return out


def _settings_table() -> str:
    text = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    start = text.index("## Settings")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def test_reference_table_lists_every_setting_and_variable() -> None:
    table = _settings_table()
    first_cells = set(re.findall(r"^\| `([a-z_.]+)`", table, flags=re.M))
    paths = _field_paths(Settings)
    assert "storage.naming" in paths and "journal.fsync_seconds" in paths
    assert sorted(set(paths) - first_cells) == []
    assert sorted(first_cells - set(paths)) == []
    source = (SRC / "settings.py").read_text() + (SRC / "storage" / "url.py").read_text()
    variables = set(re.findall(r'"((?:PVARCHIVER|ARCHAPPL)_[A-Z_]+)"', source))
    variables.add("ARCHAPPL_PROPERTIES_FILENAME")
    assert {v for v in variables if f"`{v}`" not in table} == set()


#: modules that may read the process environment: the command line (it makes the Settings),
#: EPICS' own variables in the CA and PVA packages, the environment of the demo IOC's child
#: process, the properties reader's default, and the gateway's batching knobs until they move into
#: GatewaySettings
ENV_ALLOWED = {
    "cli/serve.py",
    "cli/gateway.py",
    "ca/client.py",
    "pva/env.py",
    "ca/server_config.py",
    "demo.py",
    "properties.py",
    "gateway/fanout.py",
    "gateway/upstream.py",
}


def test_library_code_reads_no_environment_variable() -> None:
    readers = set()
    for path in SRC.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if re.search(r"(?<!`)\bos\.(environ|getenv)\b", text):  # not ``os.environ`` in prose
            readers.add(path.relative_to(SRC).as_posix())
    assert sorted(readers - ENV_ALLOWED) == []
