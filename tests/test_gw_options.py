"""ca-gateway command line: every option, prefix matching, defaults, errors, env side effects."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvarchiver.gateway.options import HELP_TEXT, OptionsError, parse_args, usage


def test_defaults() -> None:
    o = parse_args([])
    assert (o.connect_timeout, o.inactive_timeout, o.dead_timeout) == (1, 7200, 120)
    assert (o.disconnect_timeout, o.reconnect_inhibit) == (7200, 300)
    assert o.mask == 1 | 4 and o.cache and not o.archive and not o.read_only
    assert o.pvlist is None and o.access is None and o.report == "gateway.report"
    assert o.regex_flavour == "gnu" and o.debug == 0 and o.stats_prefix()


def test_ca_gateway_test_suite_command_line() -> None:
    o = parse_args("-sip localhost -sport 12783 -cip localhost -cport 12782 -access access.txt "
                   "-pvlist pvlist.txt -archive -prefix gwtest".split())  # fmt: skip
    assert (o.sip, o.sport, o.cip, o.cport) == ("localhost", 12783, "localhost", 12782)
    assert (o.access, o.pvlist, o.archive, o.prefix) == ("access.txt", "pvlist.txt", True, "gwtest")
    env = o.environment({"EPICS_CAS_AUTO_BEACON_ADDR_LIST": "yes"})
    assert env == {
        "EPICS_CA_ADDR_LIST": "localhost", "EPICS_CA_AUTO_ADDR_LIST": "NO",
        "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "YES", "EPICS_CAS_INTF_ADDR_LIST": "localhost",
        "EPICS_CA_SERVER_PORT": "12782", "EPICS_CAS_SERVER_PORT": "12783",
    }  # fmt: skip


def test_every_option() -> None:
    argv = ("-debug 5 -log g.log -pvlist p -access a -command c -putlog pl -caputlog 1.2.3.4:7011 "
            "-report r -home /tmp -sip 10.0.0.1 -cip 10.0.0.255 -signore 10.0.0.9 -sport 5070 "
            "-cport 5064 -connect_timeout 2 -inactive_timeout 3 -dead_timeout 4 "
            "-disconnect_timeout 5 -reconnect_inhibit 6 -server -uid 100 -gid 101 -ro "
            "-prefix gw -mask vlp -no_cache -archive -hide -regex pcre").split()  # fmt: skip
    o = parse_args(argv)
    assert (o.debug, o.log, o.pvlist, o.access) == (5, "g.log", "p", "a")
    assert (o.command, o.putlog) == ("c", "pl")
    assert (o.caputlog, o.report, o.home, o.sip, o.cip, o.signore) == (
        "1.2.3.4:7011", "r", "/tmp", "10.0.0.1", "10.0.0.255", "10.0.0.9")  # fmt: skip
    assert (o.sport, o.cport, o.connect_timeout, o.inactive_timeout, o.dead_timeout) == (
        5070, 5064, 2, 3, 4)  # fmt: skip
    assert (o.disconnect_timeout, o.reconnect_inhibit, o.server) == (5, 6, True)
    assert (o.uid, o.gid) == (100, 101)
    assert (o.read_only, o.prefix, o.mask, o.cache, o.archive, o.hide) == (
        True, "gw", 1 | 2 | 8, False, True, True)  # fmt: skip
    assert o.regex_flavour == "pcre"
    assert "EPICS_CAS_AUTO_BEACON_ADDR_LIST" not in o.environment({})


def test_prefix_matching_like_ca_gateway() -> None:
    o = parse_args(["-debugging", "3", "-roXYZ", "-pvlistfile", "p", "-archiveMode"])
    assert (o.debug, o.read_only, o.pvlist, o.archive) == (3, True, "p", True)
    with pytest.raises(OptionsError, match="Bad option: -serverX"):
        parse_args(["-serverX"])  # -server is the one entry that must match exactly
    with pytest.raises(OptionsError, match="Bad option: -read_only"):
        parse_args(["-read_only"])  # not an option: it is -ro


def test_values_like_sscanf() -> None:
    assert parse_args(["-sport", "12abc"]).sport == 12
    assert parse_args(["-mask", "xyz"]).mask == 5  # unknown letters ignored


def test_errors_list_valid_options() -> None:
    cases = [
        (["-cache"], "Bad option: -cache"),
        (["-sport"], "Missing value"),
        (["-sport", "abc"], "Bad value abc"),
        (["-pvlist", "-ro"], "Missing value"),
        (["stray"], "Bad option: stray"),
        (["-regex", "perl"], "Bad value perl"),
    ]
    for argv, needle in cases:
        with pytest.raises(OptionsError) as info:
            parse_args(argv)
        text = str(info.value)
        assert needle in text and "[-pvlist file_name ]" in text and "[-ro]" in text
    assert "-connect_timeout" in usage() and "-no_cache" in HELP_TEXT and parse_args(["-help"]).help


def test_negative_value_is_an_error_and_default_files(tmp_path: Path) -> None:
    with pytest.raises(OptionsError, match="Missing value for -dead_timeout"):
        parse_args(["-dead_timeout", "-5"])  # ca-gateway refuses values starting with '-'
    (tmp_path / "gateway.pvlist").write_text(".* ALLOW\n")
    (tmp_path / "gateway.access").write_text("ASG(DEFAULT){RULE(1,READ)}\n")
    o = parse_args(["-access", "mine.acf"]).resolve_files(tmp_path)
    assert o.pvlist == str(tmp_path / "gateway.pvlist") and o.access == "mine.acf"
    assert o.command is None
