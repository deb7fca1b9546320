"""EPICS CALC (ACF ``CALC("...")``): hand-checked cases plus a property test against libCom.

The oracle is the real ``postfix()``/``calcPerform()`` from epicscorelibs' libCom, loaded with
ctypes; where it cannot be loaded the property test is skipped (the hand-written cases still run).
"""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pvarchiver.gateway.calc import CalcError, compile_calc

_ERR_CODES = [
    "NONE", "TOOMANY", "BAD_LITERAL", "BAD_ASSIGNMENT", "BAD_SEPARATOR", "PAREN_NOT_OPEN",
    "PAREN_OPEN", "CONDITIONAL", "INCOMPLETE", "UNDERFLOW", "OVERFLOW", "SYNTAX", "NULL_ARG",
]


def ev(expr: str, *args: float, val: float = 0.0) -> float:
    return compile_calc(expr).evaluate(args, val)


@pytest.mark.parametrize(
    ("expr", "args", "want"),
    [
        ("A=0", (0,), 1.0),  # EPICS equality, the ISIS CALC("A=0") case
        ("A=0", (2,), 0.0),
        ("A==1", (1,), 1.0),
        ("A#1", (1,), 0.0),
        ("A!=1", (2,), 1.0),
        ("-2**2", (), 4.0),  # unary minus binds tighter than power
        ("2^3^2", (), 64.0),  # power is left-associative
        ("1+2*3", (), 7.0),
        ("(1+2)*3", (), 9.0),
        ("7%3", (), 1.0),
        ("-7%3", (), -1.0),
        ("7%0", (), math.nan),
        ("1/0", (), math.inf),
        ("ABS A", (-3,), 3.0),  # functions need no parentheses
        ("abs(a)", (-3,), 3.0),  # names are case-insensitive
        ("SQRT(16)+SQR(4)", (), 6.0),
        ("MAX(1,A,3)", (7,), 7.0),
        ("MIN(4,2,8)", (), 2.0),
        ("ATAN2(1,0)", (), 0.0),  # arguments swapped as in calcPerform: atan2(0, 1)
        ("A?B:C", (0, 5, 6), 6.0),
        ("A?B:C", (1, 5, 6), 5.0),
        ("A?B:C?D:E", (0, 1, 0, 4, 5), 5.0),
        ("A&&B", (1, 0), 0.0),
        ("A||B", (0, 2), 1.0),
        ("!A", (0,), 1.0),
        ("A AND 6", (3,), 2.0),
        ("A OR 4", (3,), 7.0),
        ("5 XOR 1", (), 4.0),
        ("~0", (), -1.0),
        ("NOT 0", (), -1.0),
        ("1<<4", (), 16.0),
        ("-16>>2", (), -4.0),
        ("-16>>>28", (), 15.0),
        ("0xFFFFFFFF", (), -1.0),
        ("NINT(2.5)+NINT(-2.5)", (), 0.0),
        ("CEIL(1.2)+FLOOR(1.8)", (), 3.0),
        ("ISNAN(NAN)+FINITE(1,2)+ISINF(INF)", (), 3.0),
        ("PI-4*ATAN(1)", (), 0.0),
        ("D2R*R2D", (), 1.0),
        ("LOG(100)+LN(1)+LOGE(1)", (), 2.0),
        ("EXP(0)", (), 1.0),
        ("SIN(0)+COS(0)+TAN(0)", (), 1.0),
        ("L", tuple(range(12)), 11.0),
        ("VAL+1", (), 3.0),
        ("A:=5;A*2", (), 10.0),
        ("LOG(0)", (), -math.inf),
        ("SQRT(-1)", (), math.nan),
        ("(-8)**(1/3)", (), math.nan),
    ],
)
def test_known_values(expr: str, args: tuple[float, ...], want: float) -> None:
    got = ev(expr, *args, val=2.0)
    if math.isnan(want):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize(
    ("expr", "code"),
    [
        ("", "NULL_ARG"),
        ("A B", "SYNTAX"),
        ("A+", "INCOMPLETE"),
        ("(A", "PAREN_OPEN"),
        ("A)", "PAREN_NOT_OPEN"),
        ("A,B", "BAD_SEPARATOR"),
        ("A?B", "CONDITIONAL"),
        ("A:B", "CONDITIONAL"),
        ("1e999", "BAD_LITERAL"),
        ("1:=2", "BAD_ASSIGNMENT"),
        ("MAX()", "SYNTAX"),
        ("1;2", "INCOMPLETE"),
        ("1;2,3", "BAD_SEPARATOR"),
        ("A $ B", "SYNTAX"),
        ("V", "SYNTAX"),  # inputs are A..U
    ],
)
def test_errors(expr: str, code: str) -> None:
    with pytest.raises(CalcError) as info:
        compile_calc(expr)
    assert info.value.code == code
    assert repr(expr) in str(info.value)


def test_inputs_used_and_stores() -> None:
    c = compile_calc("A+C*L")
    assert c.uses() == "ACL"
    assert c.inputs_used == 0b100000000101
    s = compile_calc("B:=1;B+A")
    assert s.stores == 0b10 and s.uses() == "A"  # an input stored to first is not "used"


# ---- property test against the real libCom -----------------------------------------------


# libCom runs in a child process: calcPerform does C integer arithmetic, and INT_MIN % -1
# raises SIGFPE there (a real libCom crash, which our evaluator answers with 0 instead).
# A crash must kill the oracle, not the test session.
_ORACLE_SRC = r"""
import ctypes, json, sys
import epicscorelibs.path as ecl
lib = ctypes.CDLL(ecl.get_lib("Com"))
lib.postfix.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_short)]
lib.postfix.restype = ctypes.c_long
lib.calcPerform.argtypes = [ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_double),
                            ctypes.c_char_p]
lib.calcPerform.restype = ctypes.c_long
print("ready", flush=True)
for line in sys.stdin:
    expr, args = json.loads(line)
    out = ctypes.create_string_buffer(16 * len(expr) + 64)
    err = ctypes.c_short(0)
    if lib.postfix(expr.encode(), out, ctypes.byref(err)) != 0:
        print(json.dumps(["E", err.value]), flush=True)
        continue
    argv = (ctypes.c_double * 32)(*args)
    result = ctypes.c_double(0.0)
    if lib.calcPerform(argv, ctypes.byref(result), out.raw) != 0:
        print(json.dumps(["RUNTIME", None]), flush=True)
        continue
    print(json.dumps(["NONE", result.value]), flush=True)
"""


class _Oracle:
    """A persistent libCom child; restarted after it crashes."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None

    def _start(self) -> bool:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _ORACLE_SRC], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            self.proc.wait()
            self.proc = None
            return False
        return True

    def available(self) -> bool:
        return self.proc is not None or self._start()

    def eval(self, expr: str, args: list[float]) -> tuple[str, float | None]:
        if self.proc is None or self.proc.poll() is not None:
            assert self._start(), "libCom oracle failed to restart"
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps([expr, args]) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:  # the child died inside libCom
            self.proc.wait()
            self.proc = None
            return "CRASH", None
        code, value = json.loads(line)
        if code == "E":
            return _ERR_CODES[value], None
        return code, value


ORACLE = _Oracle()
LIBCOM_OK = ORACLE.available()


def libcom_eval(expr: str, args: list[float]) -> tuple[str, float | None]:
    return ORACLE.eval(expr, args)


def ours(expr: str, args: list[float]) -> tuple[str, float | None]:
    try:
        c = compile_calc(expr)
    except CalcError as e:
        return e.code, None
    return "NONE", c.evaluate(args)


_TOKENS = [
    "A", "B", "C", "L", "M", "U", "1", "0", "2.5", ".5", "3e2", "0x1F", "0xFFFFFFFF", "INF",
    "NAN", "PI",
    "D2R", "VAL", "+", "-", "*", "/", "%", "**", "^", "=", "==", "!=", "#", "<", "<=", ">", ">=",
    "&&", "||", "!", "&", "|", "~", "<<", ">>", ">>>", "AND", "OR", "XOR", "NOT", "?", ":", "(",
    ")", ",", ";", "ABS", "SQRT", "MAX(", "MIN(", "ATAN2(", "FMOD(", "NINT", "CEIL", "FLOOR",
    "ISNAN(", "FINITE(", "ISINF", "EXP", "LOG", "LN", "SIN", "COS", "TANH", "-1e300", "1e-320",
]
_VALUES = st.sampled_from(
    [0.0, 1.0, -1.0, 2.5, -2.5, 3.0, 1e10, -1e10, 4294967296.5, 2147483648.0, -2147483649.0,
     math.inf, -math.inf, math.nan, 0.99, 1.005]
)


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return struct.pack("<d", a) == struct.pack("<d", b) or (math.isnan(a) and math.isnan(b))


@pytest.mark.skipif(not LIBCOM_OK, reason="epicscorelibs libCom not loadable")
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    toks=st.lists(st.sampled_from(_TOKENS), min_size=1, max_size=9),
    seps=st.lists(st.sampled_from(["", " "]), min_size=9, max_size=9),
    args=st.lists(_VALUES, min_size=21, max_size=21),
)
def test_matches_libcom(toks: list[str], seps: list[str], args: list[float]) -> None:
    expr = "".join(t + s for t, s in zip(toks, seps, strict=False)).strip()
    want_code, want = libcom_eval(expr, args)
    got_code, got = ours(expr, args)
    if want_code == "CRASH":  # libCom's SIGFPE: ours must simply give an answer
        assert got_code == "NONE", expr
        return
    assert got_code == want_code, expr
    assert _same(got, want), (expr, got, want)


@pytest.mark.skipif(not LIBCOM_OK, reason="epicscorelibs libCom not loadable")
@pytest.mark.parametrize(
    "expr",
    ["A<<31", "A>>>B", "~A", "A|B", "A%B", "NINT(A)", "A**B", "FMOD(A,B)", "MAX(A,B,C)",
     "MIN(A,NAN,B)", "A&&B?C:D", "ATAN2(A,B)", "A XOR B", "-A>>1", "ISNAN(A,B,C)"],
)
@settings(max_examples=200, deadline=None)
@given(args=st.lists(_VALUES | st.floats(allow_nan=True), min_size=21, max_size=21))
def test_operators_match_libcom(expr: str, args: list[float]) -> None:
    want_code, want = libcom_eval(expr, args)
    got_code, got = ours(expr, args)
    if want_code == "CRASH":  # libCom's SIGFPE (INT_MIN % -1): ours must simply give an answer
        assert got_code == "NONE" and got is not None, (expr, args)
        return
    assert (got_code, _same(got, want)) == (want_code, True), (expr, args, got, want)
