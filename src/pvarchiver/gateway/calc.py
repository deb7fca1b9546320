"""EPICS CALC expressions (libCom ``postfix`` + ``calcPerform``), for ACF ``CALC("...")`` rules.

Why not Python ``eval``: ACF files use EPICS syntax (``A=0`` is equality, ``#`` is "not equal",
``AND`` is bitwise, ``-2**2`` is 4), and a security file must never run arbitrary code. This
module is a faithful re-implementation of epics-base's two-step design:

* :func:`compile_calc` converts infix to a postfix program with the same element tables,
  priorities and error codes as ``postfix.c`` (names are matched case-insensitively, longest
  name first; ``ABS A`` without parentheses is legal, as in EPICS).
* :meth:`CalcExpr.evaluate` runs the program with ``calcPerform.c`` semantics on doubles:
  C ``pow``/``log``/division results (``inf``/``nan`` instead of exceptions), the x86-64
  conversions of doubles to 32-bit integers for bitwise operators, ``ATAN2`` arguments swapped,
  ``MAX``/``MIN`` propagating NaN, ``?:`` as jumps.

Pure functions, no I/O. The tests cross-check against the real libCom through ctypes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["NARGS", "CalcError", "CalcExpr", "compile_calc"]

#: inputs A..U, as ``CALCPERFORM_NARGS`` in epics-base 7.0.10 (A..L before; ACF INPA..INPU)
NARGS = 21
_LETTERS = "ABCDEFGHIJKLMNOPQRSTU"
#: runtime stack depth limit (``CALCPERFORM_STACK``)
STACK_LIMIT = 80

_ERRORS = {
    "TOOMANY": "Too many results returned",
    "BAD_LITERAL": "Badly formed numeric literal",
    "BAD_ASSIGNMENT": "Bad assignment target",
    "BAD_SEPARATOR": "Comma without enclosing parentheses",
    "PAREN_NOT_OPEN": "Close parenthesis found without open",
    "PAREN_OPEN": "Parenthesis still open at end of expression",
    "CONDITIONAL": "Unbalanced conditional ?: operators",
    "INCOMPLETE": "Incomplete expression, operand missing",
    "UNDERFLOW": "Not enough operands provided",
    "OVERFLOW": "Runtime stack overflow",
    "SYNTAX": "Syntax error, unknown operator/operand",
    "NULL_ARG": "NULL or empty input argument to postfix()",
}


class CalcError(ValueError):
    """A CALC expression that libCom's ``postfix()`` would reject (``code`` names the reason)."""

    def __init__(self, code: str, expr: str, pos: int | None = None) -> None:
        self.code = code
        self.expr = expr
        self.pos = pos
        where = f" at offset {pos}" if pos is not None else ""
        super().__init__(f"{_ERRORS.get(code, code)} in CALC expression {expr!r}{where}")


# element kinds
_OPERAND, _LITERAL, _STORE, _UNARY, _VARARG, _BINARY, _SEP, _CLOSE, _COND, _TERM = range(10)


@dataclass(frozen=True, slots=True)
class _Element:
    name: str
    in_stack: int
    in_coming: int
    effect: int
    kind: int
    code: str


def _e(name: str, s: int, c: int, eff: int, kind: int, code: str) -> _Element:
    return _Element(name, s, c, eff, kind, code)


# Same order as postfix.c: searched in reverse so that longer names sharing a prefix win.
_OPERANDS: tuple[_Element, ...] = (
    _e("!", 7, 8, 0, _UNARY, "REL_NOT"),
    _e("(", 0, 8, 0, _UNARY, "PAREN"),
    _e("-", 7, 8, 0, _UNARY, "UNARY_NEG"),
    _e(".", 0, 0, 1, _LITERAL, "LIT_DOUBLE"),
    _e("0", 0, 0, 1, _LITERAL, "LIT_DOUBLE"),
    _e("0X", 0, 0, 1, _LITERAL, "LIT_INT"),
    *(_e(d, 0, 0, 1, _LITERAL, "LIT_DOUBLE") for d in "123456789"),
    _e("A", 0, 0, 1, _OPERAND, "FETCH_A"),
    _e("ABS", 7, 8, 0, _UNARY, "ABS"),
    _e("ACOS", 7, 8, 0, _UNARY, "ACOS"),
    _e("ASIN", 7, 8, 0, _UNARY, "ASIN"),
    _e("ATAN", 7, 8, 0, _UNARY, "ATAN"),
    _e("ATAN2", 7, 8, -1, _UNARY, "ATAN2"),
    _e("B", 0, 0, 1, _OPERAND, "FETCH_B"),
    _e("C", 0, 0, 1, _OPERAND, "FETCH_C"),
    _e("CEIL", 7, 8, 0, _UNARY, "CEIL"),
    _e("COS", 7, 8, 0, _UNARY, "COS"),
    _e("COSH", 7, 8, 0, _UNARY, "COSH"),
    _e("D", 0, 0, 1, _OPERAND, "FETCH_D"),
    _e("D2R", 0, 0, 1, _OPERAND, "CONST_D2R"),
    _e("E", 0, 0, 1, _OPERAND, "FETCH_E"),
    _e("EXP", 7, 8, 0, _UNARY, "EXP"),
    _e("F", 0, 0, 1, _OPERAND, "FETCH_F"),
    _e("FINITE", 7, 8, 0, _VARARG, "FINITE"),
    _e("FLOOR", 7, 8, 0, _UNARY, "FLOOR"),
    _e("FMOD", 7, 8, -1, _UNARY, "FMOD"),
    _e("G", 0, 0, 1, _OPERAND, "FETCH_G"),
    _e("H", 0, 0, 1, _OPERAND, "FETCH_H"),
    _e("I", 0, 0, 1, _OPERAND, "FETCH_I"),
    _e("INF", 0, 0, 1, _LITERAL, "LIT_DOUBLE"),
    _e("ISINF", 7, 8, 0, _UNARY, "ISINF"),
    _e("ISNAN", 7, 8, 0, _VARARG, "ISNAN"),
    _e("J", 0, 0, 1, _OPERAND, "FETCH_J"),
    _e("K", 0, 0, 1, _OPERAND, "FETCH_K"),
    _e("L", 0, 0, 1, _OPERAND, "FETCH_L"),
    _e("LN", 7, 8, 0, _UNARY, "LOG_E"),
    _e("LOG", 7, 8, 0, _UNARY, "LOG_10"),
    _e("LOGE", 7, 8, 0, _UNARY, "LOG_E"),
    _e("M", 0, 0, 1, _OPERAND, "FETCH_M"),
    _e("MAX", 7, 8, 0, _VARARG, "MAX"),
    _e("MIN", 7, 8, 0, _VARARG, "MIN"),
    _e("N", 0, 0, 1, _OPERAND, "FETCH_N"),
    _e("NINT", 7, 8, 0, _UNARY, "NINT"),
    _e("NAN", 0, 0, 1, _LITERAL, "LIT_DOUBLE"),
    _e("NOT", 7, 8, 0, _UNARY, "BIT_NOT"),
    _e("O", 0, 0, 1, _OPERAND, "FETCH_O"),
    _e("P", 0, 0, 1, _OPERAND, "FETCH_P"),
    _e("PI", 0, 0, 1, _OPERAND, "CONST_PI"),
    _e("Q", 0, 0, 1, _OPERAND, "FETCH_Q"),
    _e("R", 0, 0, 1, _OPERAND, "FETCH_R"),
    _e("R2D", 0, 0, 1, _OPERAND, "CONST_R2D"),
    _e("RNDM", 0, 0, 1, _OPERAND, "RANDOM"),
    _e("S", 0, 0, 1, _OPERAND, "FETCH_S"),
    _e("SIN", 7, 8, 0, _UNARY, "SIN"),
    _e("SINH", 7, 8, 0, _UNARY, "SINH"),
    _e("SQR", 7, 8, 0, _UNARY, "SQRT"),
    _e("SQRT", 7, 8, 0, _UNARY, "SQRT"),
    _e("T", 0, 0, 1, _OPERAND, "FETCH_T"),
    _e("TAN", 7, 8, 0, _UNARY, "TAN"),
    _e("TANH", 7, 8, 0, _UNARY, "TANH"),
    _e("U", 0, 0, 1, _OPERAND, "FETCH_U"),
    _e("VAL", 0, 0, 1, _OPERAND, "FETCH_VAL"),
    _e("~", 7, 8, 0, _UNARY, "BIT_NOT"),
)

_OPERATORS: tuple[_Element, ...] = (
    _e("!=", 3, 3, -1, _BINARY, "NOT_EQ"),
    _e("#", 3, 3, -1, _BINARY, "NOT_EQ"),
    _e("%", 5, 5, -1, _BINARY, "MODULO"),
    _e("&", 2, 2, -1, _BINARY, "BIT_AND"),
    _e("&&", 2, 2, -1, _BINARY, "REL_AND"),
    _e(")", 0, 0, 0, _CLOSE, "-"),
    _e("*", 5, 5, -1, _BINARY, "MULT"),
    _e("**", 6, 6, -1, _BINARY, "POWER"),
    _e("+", 4, 4, -1, _BINARY, "ADD"),
    _e(",", 0, 0, 0, _SEP, "-"),
    _e("-", 4, 4, -1, _BINARY, "SUB"),
    _e("/", 5, 5, -1, _BINARY, "DIV"),
    _e(":", 0, 0, -1, _COND, "COND_ELSE"),
    _e(":=", 0, 0, -1, _STORE, "STORE"),
    _e(";", 0, 0, 0, _TERM, "-"),
    _e("<", 3, 3, -1, _BINARY, "LESS_THAN"),
    _e("<<", 2, 2, -1, _BINARY, "LEFT_SHIFT"),
    _e("<=", 3, 3, -1, _BINARY, "LESS_OR_EQ"),
    _e("=", 3, 3, -1, _BINARY, "EQUAL"),
    _e("==", 3, 3, -1, _BINARY, "EQUAL"),
    _e(">", 3, 3, -1, _BINARY, "GR_THAN"),
    _e(">=", 3, 3, -1, _BINARY, "GR_OR_EQ"),
    _e(">>", 2, 2, -1, _BINARY, "RIGHT_SHIFT"),
    _e(">>>", 2, 2, -1, _BINARY, "RIGHT_SHIFT_LOGIC"),
    _e("?", 0, 0, -1, _COND, "COND_IF"),
    _e("AND", 2, 2, -1, _BINARY, "BIT_AND"),
    _e("OR", 1, 1, -1, _BINARY, "BIT_OR"),
    _e("XOR", 1, 1, -1, _BINARY, "BIT_XOR"),
    _e("^", 6, 6, -1, _BINARY, "POWER"),
    _e("|", 1, 1, -1, _BINARY, "BIT_OR"),
    _e("||", 1, 1, -1, _BINARY, "REL_OR"),
)

_FETCH = {f"FETCH_{c}": i for i, c in enumerate(_LETTERS)}
_DOUBLE_RX = re.compile(
    r"(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?|nan(?:\([0-9A-Za-z_]*\))?)",
    re.IGNORECASE,
)
_UINT_RX = re.compile(r"0[xX]([0-9a-fA-F]+)")
_DBL_MIN = 2.2250738585072014e-308

Instr = tuple[str, float | int]


class _Entry:
    """A mutable copy of an element on the translation stack (``(`` counts commas in effect)."""

    __slots__ = ("code", "effect", "in_stack", "kind", "name")

    def __init__(self, el: _Element) -> None:
        self.name = el.name
        self.in_stack = el.in_stack
        self.effect = el.effect
        self.kind = el.kind
        self.code = el.code


def _find(src: str, pos: int, table: tuple[_Element, ...]) -> _Element | None:
    upper = src[pos : pos + 8].upper()
    for el in reversed(table):
        if upper.startswith(el.name):
            return el
    return None


def _parse_double(src: str, pos: int, expr: str) -> tuple[float, int]:
    """``epicsParseDouble`` on a literal: C ``strtod`` forms; overflow/underflow are errors."""
    m = _DOUBLE_RX.match(src, pos)
    if not m:
        raise CalcError("BAD_LITERAL", expr, pos)
    text = m.group(0)
    low = text.lower()
    if low.startswith("nan"):
        return math.nan, m.end()
    value = float(low)
    if math.isinf(value) and not low.startswith("inf"):
        raise CalcError("BAD_LITERAL", expr, pos)
    if value == 0.0 and any(ch in "123456789" for ch in low.split("e")[0]):
        raise CalcError("BAD_LITERAL", expr, pos)
    if 0.0 < abs(value) < _DBL_MIN:
        raise CalcError("BAD_LITERAL", expr, pos)
    return value, m.end()


def _parse_uint(src: str, pos: int, expr: str) -> tuple[int, int]:
    """``epicsParseUInt32(..., base 0)`` for ``0x`` literals; the bits are kept as epicsInt32."""
    m = _UINT_RX.match(src, pos)
    if not m:
        # strtoul would read just "0" and leave "x..." behind, which is then a syntax error
        return 0, pos + 1
    value = int(m.group(1), 16)
    if value > 0xFFFFFFFF:
        raise CalcError("BAD_LITERAL", expr, pos)
    return (value ^ 0x80000000) - 0x80000000, m.end()


def _emit(out: list[Instr], entry: _Entry) -> None:
    if entry.kind == _VARARG:
        out.append((entry.code, 1 - entry.effect))
    else:
        out.append((entry.code, 0))


def _to_postfix(expr: str) -> list[Instr]:
    if not expr:
        raise CalcError("NULL_ARG", expr)
    out: list[Instr] = []
    stack: list[_Entry] = []
    operand_needed = True
    depth = 0
    cond_count = 0
    pos = 0
    n = len(expr)
    while True:
        while pos < n and expr[pos] in " \t\n\r\f\v":
            pos += 1
        if pos >= n:
            break
        el = _find(expr, pos, _OPERANDS if operand_needed else _OPERATORS)
        if el is None:
            break
        start = pos
        pos += len(el.name)
        kind = el.kind
        if kind == _OPERAND:
            out.append((el.code, 0))
            depth += el.effect
            operand_needed = False
        elif kind == _LITERAL:
            depth += el.effect
            if el.code == "LIT_DOUBLE":
                value, pos = _parse_double(expr, start, expr)
                out.append(("LIT", value))
            else:
                ivalue, pos = _parse_uint(expr, start, expr)
                out.append(("LIT", float(ivalue)))
            operand_needed = False
        elif kind == _STORE:
            if not out or stack or not out[-1][0].startswith("FETCH_") or out[-1][0] == "FETCH_VAL":
                raise CalcError("BAD_ASSIGNMENT", expr, start)
            target = out.pop()[0]
            entry = _Entry(el)
            entry.code = "STORE_" + target[-1]
            stack.append(entry)
            depth -= 1
            operand_needed = True
        elif kind in (_UNARY, _VARARG, _BINARY):
            while stack and stack[-1].in_stack >= el.in_coming:
                top = stack.pop()
                _emit(out, top)
                depth += top.effect
            stack.append(_Entry(el))
            if kind == _BINARY:
                operand_needed = True
        elif kind == _SEP:
            while not stack or stack[-1].name != "(":
                if len(stack) <= 1:
                    raise CalcError("BAD_SEPARATOR", expr, start)
                top = stack.pop()
                _emit(out, top)
                depth += top.effect
            operand_needed = True
            stack[-1].effect -= 1
        elif kind == _CLOSE:
            while not stack or stack[-1].name != "(":
                if len(stack) <= 1:
                    raise CalcError("PAREN_NOT_OPEN", expr, start)
                top = stack.pop()
                _emit(out, top)
                depth += top.effect
            paren = stack.pop()
            if stack and stack[-1].kind == _VARARG:
                stack[-1].effect = paren.effect
                if stack[-1].effect > 0:
                    raise CalcError("INCOMPLETE", expr, start)
        elif kind == _COND:
            while stack and stack[-1].in_stack > el.in_coming:
                top = stack.pop()
                _emit(out, top)
                depth += top.effect
            out.append((el.code, 0))
            depth += el.effect
            if el.name == ":":
                cond_count -= 1
                if cond_count < 0:
                    raise CalcError("CONDITIONAL", expr, start)
                end = _Entry(el)
                end.code = "COND_END"
                end.effect = 0
                stack.append(end)
            else:
                cond_count += 1
            operand_needed = True
        elif kind == _TERM:
            while stack:
                top = stack.pop()
                if top.name == "(":
                    raise CalcError("PAREN_OPEN", expr, start)
                _emit(out, top)
                depth += top.effect
            if cond_count != 0:
                raise CalcError("CONDITIONAL", expr, start)
            if depth > 1:
                raise CalcError("TOOMANY", expr, start)
            operand_needed = True
        if depth < 0:
            raise CalcError("UNDERFLOW", expr, start)
        if depth >= STACK_LIMIT:
            raise CalcError("OVERFLOW", expr, start)
    if pos < n:
        raise CalcError("SYNTAX", expr, pos)
    while stack:
        top = stack.pop()
        if top.name == "(":
            raise CalcError("PAREN_OPEN", expr)
        _emit(out, top)
        depth += top.effect
    if cond_count != 0:
        raise CalcError("CONDITIONAL", expr)
    if operand_needed or depth != 1:
        raise CalcError("INCOMPLETE", expr)
    return out


# ---- evaluation helpers: C semantics on IEEE doubles (x86-64 conversions) ----------------


def _i32(x: float) -> int:
    """``(epicsInt32)x``: truncation; NaN and out-of-range give INT_MIN as cvttsd2si does."""
    if x != x or not -2147483649.0 < x < 2147483648.0:
        return -0x80000000
    return int(x)


def _u32(x: float) -> int:
    """``(epicsUInt32)x`` for x >= 0: gcc converts through a 64-bit signed integer."""
    if x != x or x >= 9.223372036854775807e18:
        return 0
    return int(x) & 0xFFFFFFFF


def _signed(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - 0x100000000 if v & 0x80000000 else v


def _d2i(x: float) -> int:
    return _i32(x) if x < 0 else _signed(_u32(x))


def _d2ui(x: float) -> int:
    return _i32(x) & 0xFFFFFFFF if x < 0 else _u32(x)


def _is_odd_integer(y: float) -> bool:
    return math.isfinite(y) and y == math.floor(y) and math.fmod(y, 2.0) != 0.0


def _pow(x: float, y: float) -> float:
    try:
        return math.pow(x, y)
    except ZeroDivisionError:
        return math.copysign(math.inf, x) if _is_odd_integer(y) else math.inf
    except ValueError:
        if x == 0.0 and y < 0:
            return math.copysign(math.inf, x) if _is_odd_integer(y) else math.inf
        return math.nan
    except OverflowError:
        return -math.inf if x < 0 and _is_odd_integer(y) else math.inf


def _div(a: float, b: float) -> float:
    if b == 0.0:
        if a == 0.0 or a != a:
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def _safe(fn, x: float) -> float:  # type: ignore[no-untyped-def]
    """Call a libm-like function the C way: domain errors give NaN, pole/overflow give inf."""
    try:
        return float(fn(x))
    except ValueError:
        if fn in (math.log, math.log10) and x == 0.0:
            return -math.inf
        return math.nan
    except OverflowError:
        if fn is math.sinh:
            return math.copysign(math.inf, x)
        return math.inf


def _ceil_floor(fn, x: float) -> float:  # type: ignore[no-untyped-def]
    return x if not math.isfinite(x) else float(fn(x))


def _nint(x: float) -> float:
    return float(_i32(x + 0.5 if x >= 0 else x - 0.5))


_UNARY_FN = {
    "UNARY_NEG": lambda x: -x,
    "ABS": abs,
    "EXP": lambda x: _safe(math.exp, x),
    "LOG_10": lambda x: _safe(math.log10, x),
    "LOG_E": lambda x: _safe(math.log, x),
    "SQRT": lambda x: _safe(math.sqrt, x),
    "ACOS": lambda x: _safe(math.acos, x),
    "ASIN": lambda x: _safe(math.asin, x),
    "ATAN": math.atan,
    "COS": lambda x: _safe(math.cos, x),
    "SIN": lambda x: _safe(math.sin, x),
    "TAN": lambda x: _safe(math.tan, x),
    "COSH": lambda x: _safe(math.cosh, x),
    "SINH": lambda x: _safe(math.sinh, x),
    "TANH": math.tanh,
    "CEIL": lambda x: _ceil_floor(math.ceil, x),
    "FLOOR": lambda x: _ceil_floor(math.floor, x),
    "ISINF": lambda x: 1.0 if math.isinf(x) else 0.0,
    "NINT": _nint,
    "REL_NOT": lambda x: 1.0 if x == 0.0 else 0.0,
    "BIT_NOT": lambda x: float(_signed(~_d2i(x))),
}


def _modulo(a: float, b: float) -> float:
    d = _i32(b)
    if d == 0:
        return math.nan
    n = _i32(a)
    r = abs(n) % abs(d)
    return float(-r if n < 0 else r)


def _fmod(a: float, b: float) -> float:
    try:
        return math.fmod(a, b)
    except ValueError:
        return math.nan


_BINARY_FN = {
    "ADD": lambda a, b: a + b,
    "SUB": lambda a, b: a - b,
    "MULT": lambda a, b: a * b,
    "DIV": _div,
    "MODULO": _modulo,
    "POWER": _pow,
    "ATAN2": lambda a, b: math.atan2(b, a),  # calcPerform swaps the arguments
    "FMOD": _fmod,
    "REL_OR": lambda a, b: 1.0 if (a != 0.0 or b != 0.0) else 0.0,
    "REL_AND": lambda a, b: 1.0 if (a != 0.0 and b != 0.0) else 0.0,
    "BIT_OR": lambda a, b: float(_d2i(a) | _d2i(b)),
    "BIT_AND": lambda a, b: float(_d2i(a) & _d2i(b)),
    "BIT_XOR": lambda a, b: float(_d2i(a) ^ _d2i(b)),
    "RIGHT_SHIFT": lambda a, b: float(_d2i(a) >> (_d2i(b) & 31)),
    "LEFT_SHIFT": lambda a, b: float(_signed(_d2i(a) << (_d2i(b) & 31))),
    "RIGHT_SHIFT_LOGIC": lambda a, b: float(_d2ui(a) >> (_d2ui(b) & 31)),
    "NOT_EQ": lambda a, b: 1.0 if a != b else 0.0,
    "LESS_THAN": lambda a, b: 1.0 if a < b else 0.0,
    "LESS_OR_EQ": lambda a, b: 1.0 if a <= b else 0.0,
    "EQUAL": lambda a, b: 1.0 if a == b else 0.0,
    "GR_OR_EQ": lambda a, b: 1.0 if a >= b else 0.0,
    "GR_THAN": lambda a, b: 1.0 if a > b else 0.0,
}

_CONSTS = {"CONST_PI": math.pi, "CONST_D2R": math.pi / 180.0, "CONST_R2D": 180.0 / math.pi}


class _Random:
    """calcPerform's RNDM: Knuth's 16-bit linear congruential generator (shared state, as in C)."""

    seed = 0xA3BF

    @classmethod
    def next(cls) -> float:
        cls.seed = (cls.seed * (191 * 8 + 5) + 0x3141) & 0xFFFF
        return cls.seed / 65535.0


def _cond_search(prog: Sequence[Instr], pc: int, match: str) -> int:
    count = 1
    while pc < len(prog):
        op = prog[pc][0]
        pc += 1
        if op == match:
            count -= 1
            if count == 0:
                return pc
        if op == "COND_IF":
            count += 1
    raise CalcError("CONDITIONAL", "<program>")


@dataclass(frozen=True)
class CalcExpr:
    """A compiled CALC expression: ``program`` is the postfix form, ``inputs_used`` a bitmask
    of the inputs A..U it reads (bit 0 = A), as ``calcArgUsage`` reports them."""

    expr: str
    program: tuple[Instr, ...]
    inputs_used: int
    stores: int

    def uses(self) -> str:
        """The input letters this expression reads, e.g. ``"AC"``."""
        return "".join(c for i, c in enumerate(_LETTERS) if self.inputs_used >> i & 1)

    def evaluate(self, args: Sequence[float] = (), val: float = 0.0) -> float:
        """Run the program like ``calcPerform``; ``args`` are A..U (missing ones read as 0)."""
        a = [float(x) for x in args[:NARGS]] + [0.0] * (NARGS - min(len(args), NARGS))
        stack: list[float] = []
        prog = self.program
        pc = 0
        while pc < len(prog):
            op, arg = prog[pc]
            pc += 1
            if op == "LIT":
                stack.append(float(arg))
            elif op in _BINARY_FN:
                b = stack.pop()
                stack[-1] = _BINARY_FN[op](stack[-1], b)
            elif op in _UNARY_FN:
                stack[-1] = _UNARY_FN[op](stack[-1])
            elif op in _FETCH:
                stack.append(a[_FETCH[op]])
            elif op in _CONSTS:
                stack.append(_CONSTS[op])
            elif op == "FETCH_VAL":
                stack.append(float(val))
            elif op.startswith("STORE_"):
                a[ord(op[-1]) - 65] = stack.pop()
            elif op in ("MAX", "MIN"):
                for _ in range(int(arg) - 1):
                    top = stack.pop()
                    if (stack[-1] < top if op == "MAX" else stack[-1] > top) or top != top:
                        stack[-1] = top
            elif op in ("FINITE", "ISNAN"):
                test = math.isfinite if op == "FINITE" else math.isnan
                flag = test(stack[-1])
                for _ in range(int(arg) - 1):
                    stack.pop()
                    other = test(stack[-1])
                    flag = (flag and other) if op == "FINITE" else (flag or other)
                stack[-1] = 1.0 if flag else 0.0
            elif op == "RANDOM":
                stack.append(_Random.next())
            elif op == "COND_IF":
                if stack.pop() == 0.0:
                    pc = _cond_search(prog, pc, "COND_ELSE")
            elif op == "COND_ELSE":
                pc = _cond_search(prog, pc, "COND_END")
            elif op == "COND_END":
                pass
            else:  # pragma: no cover - the compiler never emits anything else
                raise CalcError("INTERNAL", self.expr)
        if len(stack) != 1:
            raise CalcError("TOOMANY", self.expr)
        return stack[0]


def compile_calc(expr: str) -> CalcExpr:
    """Compile ``expr`` exactly as ``postfix()`` would, or raise :class:`CalcError`."""
    program = _to_postfix(expr)
    inputs = stores = 0
    for op, _ in program:
        if op in _FETCH:
            inputs |= (1 << _FETCH[op]) & ~stores
        elif op.startswith("STORE_"):
            stores |= 1 << (ord(op[-1]) - 65)
    return CalcExpr(expr, tuple(program), inputs, stores)
