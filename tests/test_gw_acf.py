"""ACF parsing and evaluation, and the combined gateway decision (pvlist + ACF + -ro).

Cases follow ca-gateway's and asLib's semantics (gateway.md §2, §8): host in/not in HAG,
user groups, levels, CALC flipping rights live, defaults without an access file. A cross-check
runs the same configuration through the real asLib of epicscorelibs' libCom."""

from __future__ import annotations

import ctypes
import tempfile
from pathlib import Path

import pytest

from pvarchiver.gateway.access import GatewayAccess, Rights
from pvarchiver.gateway.acf import Access, AcfError, AsgState, parse_acf
from pvarchiver.gateway.pvlist import PvList

ACF = """\
# upstream example/GATEWAY.access, plus levels and a HAG
UAG(GatewayAdmin) {gateway,smith}
UAG(ops) {"op1", op2}
HAG(engineershost) {Eng1.Lab, 10.0.0.5}
ASG(DEFAULT) {
    RULE(1,READ)
}
ASG(GatewayAdmin) {
    RULE(1,READ)
    RULE(1,WRITE,TRAPWRITE) { UAG(GatewayAdmin) }
}
ASG(Beam) {
    INPA(BeamAccess:access)
    RULE(1,READ)
    RULE(1,WRITE,TRAPWRITE) { UAG(ops) CALC("A=0") }
}
ASG(WASL0) {
    RULE(1,READ)
    RULE(0,WRITE) { HAG(engineershost) }
}
ASG(NOACCESS) { RULE(1,NONE) }
ASG(EMPTY)
"""


def rights(acf_text: str, asg: str, asl: int, user: str, host: str) -> tuple[str, bool]:
    acf = parse_acf(acf_text)
    r = AsgState(acf.asg(asg)).rights(asl, user, host, acf)
    return r.access.name, r.trapwrite


def test_user_groups_and_trapwrite() -> None:
    assert rights(ACF, "GatewayAdmin", 1, "smith", "any") == ("WRITE", True)
    assert rights(ACF, "GatewayAdmin", 1, "Smith", "any") == ("READ", False)  # exact user
    assert rights(ACF, "GatewayAdmin", 1, "op1", "any") == ("READ", False)


def test_host_in_and_out_of_hag_and_levels() -> None:
    assert rights(ACF, "WASL0", 0, "x", "ENG1.lab") == ("WRITE", False)  # hosts lower-cased
    assert rights(ACF, "WASL0", 0, "x", "10.0.0.5") == ("WRITE", False)
    assert rights(ACF, "WASL0", 0, "x", "eng2.lab") == ("READ", False)
    # RULE(0, ...) covers only ASL0 members; RULE(1, ...) covers ASL0 and ASL1
    assert rights(ACF, "WASL0", 1, "x", "eng1.lab") == ("READ", False)
    assert rights(ACF, "WASL0", 2, "x", "eng1.lab") == ("NONE", False)


def test_default_group_undefined_groups_and_empty_groups() -> None:
    assert rights(ACF, "NoSuchGroup", 1, "x", "h") == ("READ", False)  # members go to DEFAULT
    assert rights(ACF, "NOACCESS", 1, "x", "h") == ("NONE", False)
    assert rights(ACF, "EMPTY", 0, "x", "h") == ("NONE", False)  # no RULE: no access
    assert rights("ASG(OTHER){RULE(1,WRITE)}", "x", 1, "u", "h") == ("NONE", False)


def test_highest_access_wins_and_first_write_rule_traps() -> None:
    text = "ASG(G){RULE(1,WRITE,NOTRAPWRITE) RULE(1,READ) RULE(1,WRITE,TRAPWRITE)}"
    assert rights(text, "G", 1, "u", "h") == ("WRITE", False)


def test_calc_flips_rights_live() -> None:
    pvl = PvList.from_text(".* ALLOW\nbeam:.* ALLOW Beam 1\n")
    ga = GatewayAccess(pvl, parse_acf(ACF))
    assert ga.input_pvs() == {"BeamAccess:access"}
    seen: list[Rights] = []
    m = ga.attach("beam:shutter")
    assert m is not None and m.asg == "Beam"
    client = ga.client(m, "op1", "somehost", lambda c: seen.append(c.rights))
    assert client.rights == Rights(True, False, False)  # INP not connected yet: CALC false
    ga.update_input("BeamAccess:access", 0.0)
    assert client.rights == Rights(True, True, True) and len(seen) == 1
    ga.update_input("BeamAccess:access", 1.0)
    assert client.rights.write is False and len(seen) == 2
    ga.update_input("BeamAccess:access", 0.0, severity=3)  # INVALID: input bad
    assert client.rights.write is False and len(seen) == 2  # no change, no callback
    ga.update_input("BeamAccess:access", 0.0)
    assert client.rights.write is True and len(seen) == 3
    ga.update_input("BeamAccess:access", None)  # disconnected
    assert client.rights.write is False
    other = ga.client(m, "nobody", "h")
    assert other.rights == Rights(True, False, False)  # not in UAG ops
    client.close()
    ga.update_input("BeamAccess:access", 0.0)
    assert len(seen) == 4  # closed clients are not notified


def test_calc_without_inputs_is_never_true() -> None:
    assert rights('ASG(G){RULE(1,WRITE){CALC("1")}}', "G", 1, "u", "h") == ("NONE", False)


def test_no_access_file_is_read_only_and_ro_flag(tmp_path: Path) -> None:
    ga = GatewayAccess.load(None, None)
    m = ga.attach("any:pv")
    assert m is not None and ga.rights(m, "u", "h") == Rights(True, False)
    acf = tmp_path / "a.acf"
    acf.write_text("ASG(DEFAULT) { RULE(1,WRITE) }\n")  # ca-gateway test access.txt
    assert ga.load(None, acf).rights(m, "u", "h") == Rights(True, True)
    assert ga.load(None, acf, read_only=True).rights(m, "u", "h") == Rights(True, False)
    missing = GatewayAccess.load(None, tmp_path / "missing.acf")  # default READ rules
    assert missing.rights(m, "u", "h") == Rights(True, False)
    assert "cannot open access security file" in missing.warnings[0]
    bad = tmp_path / "bad.acf"
    bad.write_text("ASG(DEFAULT) {\n RULE(1,WRITE\n}\n")
    broken = GatewayAccess.load(None, bad)  # parse error at start: asLib inactive, read-only
    assert broken.acf is None and broken.rights(m, "u", "h") == Rights(True, False)
    assert f"{bad}:3:" in broken.warnings[0]


def test_reload_keeps_old_config_on_error_and_notifies(tmp_path: Path) -> None:
    pvl, acf = tmp_path / "p", tmp_path / "a"
    pvl.write_text(".* ALLOW RW\n")
    acf.write_text("ASG(RW){RULE(1,WRITE)}\n")
    ga = GatewayAccess.load(pvl, acf)
    changes: list[Rights] = []
    c = ga.client(ga.attach("x"), "u", "h", lambda c: changes.append(c.rights))  # type: ignore[arg-type]
    assert c.rights.write
    acf.write_text("ASG(RW){RULE(1,WRITE}\n")
    errors = ga.reload(pvl, acf)
    assert errors and "keeping the previous configuration" in errors[0] and c.rights.write
    acf.write_text("ASG(RW){RULE(1,READ)}\n")
    assert ga.reload(pvl, acf) == [] and changes == [Rights(True, False)]
    pvl.write_text("y ALLOW\n")
    ga.reload(pvl, acf)
    assert changes[-1] == Rights(False, False)  # name no longer served


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("", 1, "empty"),
        ("UAG(a){x}\nUAG(a){y}\n", 2, "Duplicate User Access Group"),
        ("ASG(a)\nASG(a)\n", 2, "Duplicate Access Security Group"),
        ("ASG(a){\nRULE(1,READ){UAG(nobody)}}\n", 2, "No User Access Group named 'nobody'"),
        ("ASG(a){RULE(1,READ,LOG)}", 1, "TRAPWRITE or NOTRAPWRITE"),
        ('ASG(a){RULE(1,READ){CALC("A+")}}', 1, "Incomplete expression"),
        ('ASG(a){RULE(1,READ){CALC("A:=1;A")}}', 1, "Assignment operator"),
        ("ASG(a){}", 1, "empty ASG body"),
        ("UAG(x){1234}", 1, "expected a name"),  # all-digit names must be quoted
        ("ASG(a){RULE(-1,READ)}", 1, "LEVEL must be positive"),
        ('UAG(x){"abc\n}', 1, "Newline in quoted string"),
        ("UAG(x){a&b}", 1, "Invalid character '&'"),
        ("ASG(a){\n\n RULE(1,READ) {UAG(}\n}", 3, "syntax error"),
    ],
)
def test_acf_errors_name_the_line(text: str, line: int, needle: str) -> None:
    with pytest.raises(AcfError) as info:
        parse_acf(text, source="t.acf")
    assert info.value.line == line and needle in str(info.value)
    assert str(info.value).startswith(f"t.acf:{line}:")


def test_newer_keywords_are_tolerated_fail_secure() -> None:
    acf = parse_acf(
        'AUTHORITY(CA1, "My CA") { AUTHORITY(SUB, "Sub CA") }\n'
        "SOMETHING(x, 1) { y(z) }\n"
        "ASG(G) {\n"
        "  RULE(1,READ)\n"
        '  RULE(1,WRITE) { METHOD("x509") AUTHORITY(CA1) }\n'
        "  RULE(1,RPC) { UAG(nobody_defined_but_ignored) }\n"
        "  RULE(1,WRITE) { PROTOCOL(TLS) }\n"
        "}\n"
        "HAG(h) {Host-1.LAB}\n"
    )
    g = acf.asgs["G"]
    assert [r.access for r in g.rules] == [Access.READ, Access.WRITE, Access.WRITE]
    assert g.rules[1].disabled == "METHOD" and g.rules[2].disabled == "PROTOCOL"
    assert AsgState(g).rights(1, "u", "h", acf).access == Access.READ
    assert acf.hags["h"] == {"host-1.lab"}
    assert len(acf.warnings) >= 4 and all(w.startswith("<string>:") for w in acf.warnings)


def test_lexer_longest_match_rules() -> None:
    acf = parse_acf('UAG(u) {10.0.0.1, host-1.lab, "1234", "UAG", a:b;c}\nASG(DEFAULT)\n')
    assert acf.uags["u"] == {"10.0.0.1", "host-1.lab", "1234", "UAG", "a:b;c"}
    assert acf.asgs["DEFAULT"].rules == []


def test_dump_and_report() -> None:
    ga = GatewayAccess(PvList.default(), parse_acf(ACF))
    text = ga.report()
    assert "RULE(1,WRITE,TRAPWRITE)" in text and 'CALC("A=0")' in text and "INPA(" in text


# ---- cross-check with the real asLib (libCom) ----------------------------------------------


def _aslib() -> ctypes.CDLL | None:
    try:
        import epicscorelibs.path as ecl

        lib = ctypes.CDLL(ecl.get_lib("Com"))
        libc = ctypes.CDLL(None)
        libc.fopen.restype = ctypes.c_void_p
        libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        libc.fclose.argtypes = [ctypes.c_void_p]
        lib.asDumpMemFP.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int]
        lib.asInitMem.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        lib.asAddMember.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p]
        lib.asAddClient.argtypes = [
            ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p,
            ctypes.c_char_p,
        ]
        lib._libc = libc  # type: ignore[attr-defined]
        return lib
    except Exception:
        return None


ASLIB = _aslib()
CASES = [
    (asg, asl, user, host)
    for asg in ("DEFAULT", "GatewayAdmin", "WASL0", "NOACCESS", "EMPTY", "Undefined")
    for asl in (0, 1, 2)
    for user in ("smith", "op1", "nobody")
    for host in ("eng1.lab", "ENG1.LAB", "10.0.0.5", "elsewhere")
]


@pytest.mark.skipif(ASLIB is None, reason="epicscorelibs libCom not loadable")
def test_rights_match_real_aslib() -> None:
    assert ASLIB is not None
    text = ACF.replace('    INPA(BeamAccess:access)\n', "")  # no CA inputs in this process
    assert ASLIB.asInitMem(text.encode(), None) == 0
    keep = []
    members: dict[str, ctypes.c_void_p] = {}
    for asg, asl, user, host in CASES:
        if asg not in members:
            members[asg] = ctypes.c_void_p()
            name = ctypes.c_char_p(asg.encode())
            assert ASLIB.asAddMember(ctypes.byref(members[asg]), name) == 0
            keep.append(name)
        client = ctypes.c_void_p()
        hostbuf = ctypes.create_string_buffer(host.encode())  # asLib lower-cases it in place
        userbuf = ctypes.create_string_buffer(user.encode())
        assert ASLIB.asAddClient(ctypes.byref(client), members[asg], asl, userbuf, hostbuf) == 0
        keep += [client, hostbuf, userbuf]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "dump.txt"
        libc = ASLIB._libc  # type: ignore[attr-defined]
        fp = libc.fopen(str(path).encode(), b"w")
        ASLIB.asDumpMemFP(fp, None, None, 1)
        libc.fclose(fp)
        dump = path.read_text()
    real: list[tuple[str, ...]] = []
    member = ""
    for line in dump.splitlines():
        parts = line.split()
        if line.startswith("\t\t\t"):
            level = parts[2][3:] if parts[2].startswith("ASL") else parts[4]
            access = parts[3] if parts[2].startswith("ASL") else parts[5]
            real.append((member, parts[0], parts[1], level, access))
        elif line.startswith("\t\t") and parts:
            member = parts[0]
    acf = parse_acf(text)
    ours = [
        (asg, user, host.lower(), str(asl),
         AsgState(acf.asg(asg)).rights(asl, user, host, acf).access.name)
        for asg, asl, user, host in CASES
    ]  # fmt: skip
    assert len(real) == len(CASES)
    assert sorted(real) == sorted(ours)
