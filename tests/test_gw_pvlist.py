"""pvlist parsing and decisions, ported from ca-gateway's test pvlists (``testTop/pyTestsApp``),
its example file, ISIS and PCDS styles; GNU regex translation cross-checked with glibc."""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pvarchiver.gateway.pvlist import ALLOW_DENY, DENY_ALLOW, PvList, PvListError
from pvarchiver.gateway.regex import Pattern, PatternError

HOSTS = {"badhost": "10.0.0.66", "10.0.0.7": "10.0.0.7", "other.lab": "10.0.0.8"}


def parse(text: str, flavour: str = "gnu") -> PvList:
    return PvList.from_text(text, flavour=flavour, resolve=HOSTS.get)


def real(pv: PvList, name: str, ip: str | None = None) -> str | None:
    m = pv.decide(name, ip)
    return None if m is None else m.real_name


# ---- ca-gateway's own test pvlists (pvlist_bre.txt / pvlist_pcre.txt) ---------------------

GW_TEST_BRE = """\
EVALUATION ORDER ALLOW, DENY
gateway:\\(.*\\)  ALIAS ioc:\\1
ioc:.*  DENY
gwtest:.*  ALLOW
"""
GW_TEST_PCRE = GW_TEST_BRE.replace("\\(", "(").replace("\\)", ")")


@pytest.mark.parametrize(("text", "flavour"), [(GW_TEST_BRE, "gnu"), (GW_TEST_PCRE, "pcre")])
def test_gateway_test_suite_pvlist(text: str, flavour: str) -> None:
    pv = parse(text, flavour)
    assert real(pv, "gateway:ai") == "ioc:ai"  # the alias is served...
    assert real(pv, "ioc:ai") is None  # ...though the real name is denied
    assert real(pv, "gwtest:x") == "gwtest:x"
    assert real(pv, "other") is None
    assert pv.warnings == []


def test_upstream_example_file() -> None:
    pv = parse(
        "EVALUATION ORDER ALLOW, DENY\n"
        "[0-9].* ALLOW\n[a-z].* ALLOW\n[A-Z].* ALLOW\n"
        "Beam:.* ALLOW Beam 1\nPS.* ALLOW PowerSupply 1\n"
        "gateway:.*Flag ALLOW GatewayAdmin\n"
        "test.* DENY\n"
        "ps\\([0-9]\\) ALIAS PSCurrent\\1.ai PowerSupply 1\n"
        "#!gateway:.* DENY FROM 10.0.0.7\n"
    )
    m = pv.decide("Beam:current")
    assert m is not None and (m.asg, m.asl) == ("Beam", 1)
    m = pv.decide("ps3")
    assert m is not None and (m.real_name, m.asg, m.asl) == ("PSCurrent3.ai", "PowerSupply", 1)
    m = pv.decide("gateway:newAsFlag")
    assert m is not None and (m.asg, m.asl) == ("GatewayAdmin", 1)
    assert pv.decide("testpv") is None
    assert pv.decide("9abc") is not None and pv.decide("_x") is None


def test_last_line_first_general_rules_first() -> None:
    pv = parse("A.* ALLOW GEN 1\nAB.* ALLOW SPEC 0\n")
    assert pv.decide("ABC").asg == "SPEC"  # type: ignore[union-attr]
    assert pv.decide("AXY").asg == "GEN"  # type: ignore[union-attr]


def test_evaluation_order() -> None:
    allow_deny = parse("EVALUATION ORDER ALLOW, DENY\n.* ALLOW\nsecret.* DENY\n")
    assert allow_deny.order == ALLOW_DENY
    assert real(allow_deny, "secret1") is None and real(allow_deny, "open") == "open"
    # with DENY, ALLOW plain DENY lines are never consulted (ca-gateway: they are no-ops)
    deny_allow = parse("EVALUATION ORDER DENY, ALLOW\n.* ALLOW\nsecret.* DENY\n")
    assert deny_allow.order == DENY_ALLOW
    assert real(deny_allow, "secret1") == "secret1"
    # separators and case are free, the first word is ignored (with a warning), last line wins
    loose = parse("whatever order deny allow\nEVALUATION ORDER allow,deny\n.* ALLOW\nx DENY\n")
    assert loose.order == ALLOW_DENY and real(loose, "x") is None
    assert any("ignored" in w for w in loose.warnings)


def test_deny_from_hosts_only_on_search() -> None:
    pv = parse(".* ALLOW\nsecret:.* DENY FROM badhost, 10.0.0.7\nall:.* deny from other.lab\n")
    assert real(pv, "secret:a", "10.0.0.66") is None
    assert real(pv, "secret:a", "10.0.0.7") is None
    assert real(pv, "secret:a", "10.0.0.9") == "secret:a"
    assert real(pv, "secret:a", None) == "secret:a"  # channel create: DENY FROM not checked
    assert real(pv, "all:x", "10.0.0.8") is None
    assert pv.deny_from_used


def test_deny_from_unresolvable_host_fails_closed() -> None:
    pv = parse(".* ALLOW\nsecret:.* DENY FROM nosuchhost\n")
    assert real(pv, "secret:a", "10.0.0.9") is None
    assert any("cannot resolve" in w for w in pv.warnings)


def test_negated_patterns_isis_block_gateway() -> None:
    pv = parse(
        "EVALUATION ORDER ALLOW, DENY\n"
        "IN:X:CS:SB:TEMP\\([.:].*\\)  ALIAS  IN:X:TC:T1\\1\n"
        "IN:X:CS:SB:TEMP  ALIAS IN:X:TC:T1\n"
        "IN:X:CS:SB:SETP\\(:SP\\)?\\([.:].*\\)  ALIAS  IN:X:PS:SET\\2\n"
        "IN:X:CS:GATEWAY:BLOCKSERVER:.* ALLOW ANYBODY 1\n"
        "IN:X:CS:SB:[^:]*:[ADR]C:.* DENY\n"
        "!IN:X:CS:\\(SB\\|GATEWAY\\):.* DENY\n"
    )
    assert real(pv, "IN:X:CS:SB:TEMP") == "IN:X:TC:T1"
    assert real(pv, "IN:X:CS:SB:TEMP.EGU") == "IN:X:TC:T1.EGU"
    assert real(pv, "IN:X:CS:SB:SETP:SP.VAL") == "IN:X:PS:SET.VAL"
    assert real(pv, "IN:X:CS:SB:SETP:RBV") == "IN:X:PS:SET:RBV"  # optional group unset
    assert real(pv, "IN:X:CS:SB:TEMP:AC:LOW") is None
    assert pv.decide("IN:X:CS:GATEWAY:BLOCKSERVER:x").asg == "ANYBODY"  # type: ignore[union-attr]
    assert real(pv, "IN:X:OTHER") is None  # the negated DENY catches everything else


def test_alias_substitution_rules() -> None:
    pv = parse("a\\(b\\)\\(c\\)? ALIAS x\\0-\\1-\\2-\\9-\\q\\\\\n")
    assert real(pv, "ab") == "xab-b---q\\"
    long_name = parse("L\\(.*\\) ALIAS \\1\\1\n")
    assert len(real(long_name, "L" + "z" * 200) or "") == 255  # truncated like the C buffer


def test_synonyms_case_and_asl_parsing() -> None:
    pv = parse("a.* pattern G1 0\nb.* Pv G2 1x\nc.* allow G3 zz\nd.* Allow G4\n")
    assert (pv.decide("a1").asg, pv.decide("a1").asl) == ("G1", 0)  # type: ignore[union-attr]
    assert pv.decide("b1").asl == 1  # type: ignore[union-attr]  # sscanf("1x") = 1
    assert pv.decide("c1").asl == 1  # type: ignore[union-attr]  # non-numeric: 1
    assert pv.decide("d1").asl == 1  # type: ignore[union-attr]
    assert any("'zz' is not a number" in w for w in pv.warnings)


def test_missing_asl_is_one_and_warns_where_c_differs() -> None:
    pv = parse("a.* ALLOW G 0\nb.* ALLOW H\n")
    assert pv.decide("b").asl == 1  # type: ignore[union-attr]
    assert any(":2:" in w and "reuse 0" in w for w in pv.warnings)


def test_errors_are_reported_with_line_and_skipped() -> None:
    pv = parse("good ALLOW\nlonely\nx FOO\n\\(bad ALLOW\ny ALIAS\nEVALUATION ORDER up down\n")
    msgs = "\n".join(pv.warnings)
    for needle in (":2: missing command", ":3: invalid command 'FOO'", ":4: bad pattern",
                   ":5: missing real name", ":6: invalid argument"):  # fmt: skip
        assert needle in msgs
    assert real(pv, "good") == "good" and real(pv, "x") is None


def test_comment_quirks_do_the_intended_thing_and_warn() -> None:
    pv = parse(".* ALLOW\nsecret DENY # not a host\nopen ALLOW#c\n# full line\n\n")
    assert real(pv, "secret", "10.0.0.9") is None  # C would deny from hosts '#', 'not', ...
    assert any(":2: comment after DENY" in w for w in pv.warnings)
    assert any(":3: '#' directly after 'ALLOW'" in w for w in pv.warnings)


def test_crlf_and_missing_final_newline() -> None:
    pv = parse(".* ALLOW\r\nsecret DENY\r\nlast ALLOW G 0")
    assert real(pv, "secret") is None
    assert pv.decide("last").asl == 0  # type: ignore[union-attr]
    assert any("CRLF" in w for w in pv.warnings)
    assert any("no newline at end of file" in w for w in pv.warnings)


def test_file_errors_and_default(tmp_path: Path) -> None:
    with pytest.raises(PvListError, match="cannot read PV list file"):
        PvList.from_file(tmp_path / "missing.pvlist")
    f = tmp_path / "g.pvlist"
    f.write_text("bad\\( ALLOW\n")
    pv = PvList.from_file(f)
    assert pv.warnings[0].startswith(f"{f}:1: bad pattern")
    d = PvList.default()
    assert real(d, "anything:at.all") == "anything:at.all"
    assert d.decide("x").asg == "DEFAULT" and d.decide("x").asl == 1  # type: ignore[union-attr]


def test_report_lists_rules() -> None:
    text = parse("a.* ALLOW G 0\nb DENY\nc DENY FROM 10.0.0.7\n").report()
    assert "a.*" in text and "Denied from ALL Hosts" in text and "10.0.0.7" in text
    assert "Evaluation order: allow, deny" in text


# ---- regex flavours ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "name", "gnu", "pcre"),
    [
        ("a|ab", "ab", False, False),  # GNU: '|' is literal; PCRE: first alternative wins
        ("a\\|ab", "ab", True, None),
        ("(ab)", "(ab)", True, False),
        ("a{2}", "a{2}", True, False),
        ("a{2}", "aa", False, True),
        ("a+", "aaa", True, True),
        ("a?b", "b", True, True),
        ("FOO.*?", "FOOBAR", True, False),  # PCRE: lazy first match must reach the end
        ("*a", "*a", True, None),  # leading star is literal in GNU
        ("x^y$z", "x^y$z", True, False),
        ("[\\]x", "\\x", True, None),  # backslash is literal in brackets
        ("\\w+:\\<V\\>", "ab:V", True, None),
    ],
)
def test_flavour_match_rules(pattern: str, name: str, gnu: bool, pcre: bool | None) -> None:
    assert (Pattern.compile(pattern, "gnu").match(name) is not None) is gnu
    if pcre is not None:
        assert (Pattern.compile(pattern, "pcre").match(name) is not None) is pcre


def test_posix_bre_flavour() -> None:
    assert Pattern.compile("a\\{2\\}", "bre").match("aa") is not None
    assert Pattern.compile("a+", "bre").match("a+") is not None
    assert Pattern.compile("a\\+", "bre").match("aaa") is not None
    assert Pattern.compile("[[:digit:]]x", "bre").match("5x") is not None
    with pytest.raises(PatternError):
        Pattern.compile("a\\{x\\}", "bre")


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.re_compile_pattern.restype = ctypes.c_char_p
        libc.re_compile_pattern.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p]
        libc.re_match.argtypes = [
            ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p
        ]
        ctypes.c_ulong.in_dll(libc, "re_syntax_options")
    except (OSError, AttributeError, ValueError):
        return None
    return libc


LIBC = _glibc()
RE_SYNTAX_POSIX_BASIC = (1 << 2) | (1 << 6) | (1 << 7) | (1 << 9) | (1 << 16) | (1 << 1) | (1 << 24)


class _Regs(ctypes.Structure):
    _fields_ = [
        ("num_regs", ctypes.c_uint),
        ("start", ctypes.POINTER(ctypes.c_int)),
        ("end", ctypes.POINTER(ctypes.c_int)),
    ]


def glibc_match(pattern: str, name: str, syntax: int) -> tuple[bool, list[str]] | None:
    """ca-gateway's test: re_match(...) == len(name); returns (hit, groups) or None (bad)."""
    assert LIBC is not None
    ctypes.c_ulong.in_dll(LIBC, "re_syntax_options").value = syntax
    buf = ctypes.create_string_buffer(512)
    raw = pattern.encode()
    if LIBC.re_compile_pattern(raw, len(raw), buf) is not None:
        return None
    regs = _Regs()
    n = LIBC.re_match(buf, name.encode(), len(name), 0, ctypes.byref(regs))
    if n != len(name):
        return False, []
    groups = [
        name[regs.start[i] : regs.end[i]] if regs.start[i] >= 0 else ""
        for i in range(min(regs.num_regs, 10))
    ]
    return True, groups


@pytest.mark.skipif(LIBC is None, reason="needs glibc's re_compile_pattern")
@pytest.mark.parametrize(("flavour", "syntax"), [("gnu", 0), ("bre", RE_SYNTAX_POSIX_BASIC)])
@settings(max_examples=800, deadline=None)
@given(
    parts=st.lists(
        st.sampled_from(
            ["a", "b", ".", "*", "+", "?", "\\(", "\\)", "\\|", "(", ")", "|", "{", "}", "\\{2\\}",
             "\\{1,2\\}", "^", "$", "[ab]", "[^a]", "[]a]", "[a-]", "\\.", "\\1", "\\w", ":",
             "\\+", "\\?", "[[:digit:]]", "1", "\\<", "\\>", "\\`", "\\'", "\\b"]
        ),
        min_size=1,
        max_size=6,
    ),
    name=st.text(alphabet="ab1:.(){}|+?*", max_size=6),
)
def test_gnu_translation_matches_glibc(
    flavour: str, syntax: int, parts: list[str], name: str
) -> None:
    pattern = "".join(parts)
    want = glibc_match(pattern, name, syntax)
    try:
        pat = Pattern.compile(pattern, flavour, negation=False)
    except PatternError:
        assert want is None, pattern  # we may only refuse what glibc refuses
        return
    if want is None:
        return  # glibc refuses a few patterns Python accepts (e.g. "a\\1"); harmless
    hit = pat.match(name)
    assert (hit is not None) is want[0], (pattern, name)
