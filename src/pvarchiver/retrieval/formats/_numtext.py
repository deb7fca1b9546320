"""Decimal text of numpy columns, computed column-wise instead of one Python object per number.

Why this exists: the body of a JSON or CSV response for a ScalarDouble PV is mostly digits, and
``float.__repr__`` costs about 0.5 µs a number on the reference machine, which alone would cap a
renderer well under the 1 M samples/s the retrieval API is meant to sustain. Here every number
of a block is formatted with a handful of numpy operations over the whole column.

Lines are assembled in an ``(n, width)`` uint8 matrix, one row per line. Each field owns a
fixed slot of columns; bytes a row does not need are left NUL, and a single
``tobytes().translate(None, b"\\0")`` squeezes every NUL out at C speed. So nothing has to be
aligned: an integer is written right-aligned with its leading zeros blanked, a sign sits at the
start of its slot, and whatever NULs lie between the pieces vanish. (No output of the renderers
contains a NUL byte: JSON and the AA's text formats escape control characters.)

Floats get the text Python's ``repr`` gives: the shortest decimal that reads back as the same
float (float32 values: the shortest that reads back as the same float32), fixed notation for
decimal exponents -4 < e <= 16, otherwise ``1.5e+20`` style. The digits are found exactly:

1. ``e10 = floor(log10(|v|))`` from ``np.log10``, corrected against a table of the smallest
   float at or above each power of ten, so it is exact.
2. ``|v|`` is scaled by ``10**(D - 1 - e10)`` (D = 17 for float64, 9 for float32) in
   double-double arithmetic: Dekker's error-free product (plain float64 operations, hence the
   same result on every platform, which ``np.longdouble`` would not give) keeps the scaled value
   to about 1e-30 relative, i.e. an integer part plus a fraction known to ~1e-13.
3. The decimals that read back as ``v`` are those strictly inside ``v`` ± half an ulp; scaled,
   that interval is at least 1.1 units wide, and its integer bounds [L, H] follow from the
   fraction. The coarsest power of ten 10**j with a multiple in [L, H] gives the shortest
   digits; the multiple nearest to ``v`` is the one ``repr`` picks.

Values scaled by a single power of ten (1e-6 <= |v| < 1e17 for float64, 1e-14 <= |v| < 1e9
for float32, i.e. nearly all data) are computed without any rounding, so even exact ties are
settled by the rules themselves (a decimal halfway between two floats reads back as the one
with the even significand; between two equally near shortest decimals ``repr`` takes the even
last digit). For other values, whenever the error bound cannot settle a comparison (within 1e-9
of an integer), and for values outside the scaled range (|v| < 1e-28 or >= 1e61, subnormals),
the row is handed to ``repr`` itself. Those rows are rare, and their text is the reference one
by construction; the test suite compares the fast path against ``repr`` on millions of values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

__all__ = [
    "JAVA_SPECIALS",
    "JSON_SPECIALS",
    "FloatCol",
    "IntCol",
    "Lit",
    "Segment",
    "Specials",
    "TableCol",
    "float_strings",
    "float_text",
    "render_rows",
]

# Rows per matrix: the scratch arrays of a batch (a few MB) stay in cache.
BATCH = 16384

_P10_INT = np.array([10**i for i in range(19)], dtype=np.int64)
_P10_FLT = np.array([10.0**i for i in range(23)])  # exact doubles: 10**22 < 2**53 * 2**22
_SPLIT = 134217729.0  # 2**27 + 1, Dekker's splitting constant for 53-bit mantissas
_EPS = 1e-9  # decision margin in scaled units; the arithmetic error is below 1e-12


def _split(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dekker's split: a == hi + lo with both halves 26 bits wide, so products are exact."""
    t = _SPLIT * a
    hi = t - (t - a)
    return hi, a - hi


_P10_HI, _P10_LO = _split(_P10_FLT)


@dataclass(frozen=True)
class Specials:
    """Texts for values that have no decimal form."""

    nan: bytes
    pos_inf: bytes
    neg_inf: bytes


#: JSON has no NaN or Infinity; strict parsers reject the bare words (AA issue #65).
JSON_SPECIALS = Specials(b"null", b"null", b"null")
#: What Java's ``Double.toString`` prints, as the AA's CSV and text responses do.
JAVA_SPECIALS = Specials(b"NaN", b"Infinity", b"-Infinity")


# ----------------------------------------------------------------------------- float kinds


@dataclass(frozen=True)
class _Kind:
    digits: int  # significant decimal digits that always suffice to round-trip
    mant: int  # mantissa bits including the implicit one
    kmin: int  # power of ten of thresholds[0]
    thresholds: np.ndarray  # smallest value of the type >= 10**k, as float64
    emin: int  # range of e10 handled by the fast path
    emax: int


def _smallest_at_or_above(k: int, ftype: type[np.floating]) -> float:
    """Smallest float of ``ftype`` that is >= 10**k, exactly (via Fraction)."""
    target = Fraction(10) ** k
    if target > Fraction(float(np.finfo(ftype).max)):
        return math.inf
    x = ftype(float(target))
    up, down = ftype(np.inf), ftype(0)
    while Fraction(float(x)) < target:
        x = np.nextafter(x, up)
    while Fraction(float(np.nextafter(x, down))) >= target:
        x = np.nextafter(x, down)
    return float(x)


def _kind(ftype: type[np.floating], digits: int, mant: int, emin: int, emax: int) -> _Kind:
    kmin = emin - 2
    table = np.array([_smallest_at_or_above(k, ftype) for k in range(kmin, emax + 3)])
    return _Kind(digits, mant, kmin, table, emin, emax)


# The scale exponent s = digits - 1 - e10 must stay within [-44, 44]: two exact powers of ten.
_F64 = _kind(np.float64, 17, 53, -28, 60)
_F32 = _kind(np.float32, 9, 24, -36, 38)


# ----------------------------------------------------------------------------- double-double


def _two_prod_pow(a: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """a * 10**s exactly, as hi + lo (0 <= s <= 22, so the power is an exact double)."""
    p10 = _P10_FLT[s]
    p = a * p10
    ah, al = _split(a)
    bh, bl = _P10_HI[s], _P10_LO[s]
    err = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, err


def _fast_two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = a + b
    return s, b - (s - a)


def _mul_pow(x: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s1 = np.minimum(s, 22)
    hi, lo = _two_prod_pow(x, s1)
    s2 = s - s1
    if s2.any():
        p, e = _two_prod_pow(hi, s2)
        e += lo * _P10_FLT[s2]
        hi, lo = _fast_two_sum(p, e)
    return hi, lo


def _div_step(hi: np.ndarray, lo: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hi + lo) / 10**d: the remainder hi - q*P is exact (Sterbenz), only lo/P rounds."""
    p10 = _P10_FLT[d]
    q = hi / p10
    p, e = _two_prod_pow(q, d)
    r = ((hi - p) - e) + lo
    return _fast_two_sum(q, r / p10)


def _div_pow(x: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d1 = np.minimum(d, 22)
    hi, lo = _div_step(x, np.zeros_like(x), d1)
    d2 = d - d1
    if d2.any():
        hi, lo = _div_step(hi, lo, d2)
    return hi, lo


def _scale(x: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x * 10**s for |s| <= 44 as a double-double (relative error ~1e-30)."""
    pos = s >= 0
    if pos.all():
        return _mul_pow(x, s)
    if not pos.any():
        return _div_pow(x, -s)
    hi, lo = np.empty_like(x), np.empty_like(x)
    hi[pos], lo[pos] = _mul_pow(x[pos], s[pos])
    neg = ~pos
    hi[neg], lo[neg] = _div_pow(x[neg], -s[neg])
    return hi, lo


def _scale_plain(h: np.ndarray, s: np.ndarray) -> np.ndarray:
    """h * 10**s in plain float64 (h is a power of two; a rounding error of 1e-16 is fine)."""
    out: np.ndarray = h * _P10_FLT[np.clip(s, 0, 22)] * _P10_FLT[np.clip(s - 22, 0, 22)]
    neg = s < 0
    if neg.any():
        d = -s[neg]
        out[neg] = h[neg] / _P10_FLT[np.minimum(d, 22)] / _P10_FLT[np.clip(d - 22, 0, 22)]
    return out


# ----------------------------------------------------------------------------- shortest digits


@dataclass
class _Parts:
    """Pieces of the text of each value; rows with ``slow`` set need ``repr``."""

    neg: np.ndarray  # bool: a leading "-"
    ipart: np.ndarray  # int64: digits before the point (the mantissa's first digit in sci)
    fpart: np.ndarray  # int64: digits after the point, as an integer ...
    flen: np.ndarray  # ... written with this many digits (leading zeros kept); 0 = no point
    sci: np.ndarray  # bool: exponent notation
    exp: np.ndarray  # int64: decimal exponent (sci rows)
    special: np.ndarray  # bool: NaN or infinity
    slow: np.ndarray  # bool: fast path declined, use repr


def _exact_e10(x: np.ndarray, kind: _Kind) -> np.ndarray:
    """floor(log10(x)) exactly for positive finite x; values far outside the table come out
    below emin or above emax (and are not used)."""
    with np.errstate(divide="ignore"):
        e10: np.ndarray = np.floor(np.log10(x)).astype(np.int64)
    np.clip(e10, kind.kmin + 1, kind.kmin + len(kind.thresholds) - 2, out=e10)
    e10 -= x < kind.thresholds[e10 - kind.kmin]
    e10 += x >= kind.thresholds[e10 + 1 - kind.kmin]
    return e10


def _two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """a + b exactly, as s + err (Knuth)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _shortest(
    x: np.ndarray, e10: np.ndarray, kind: _Kind
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For positive x with exact ``e10`` in the fast range: (m, exp10, undecided) with x's
    shortest round-trip decimal equal to m * 10**exp10 (m without trailing zeros).

    Rows scaled by one exact power (0 <= s <= 22, most values in practice) are computed
    exactly, so ties are decided by the rules themselves: a decimal exactly halfway between
    two floats reads back as the one with the even mantissa, and between two equally near
    shortest decimals ``repr`` takes the one with the even last digit. Other rows decide with
    a margin of _EPS and report ``undecided`` when that is not enough.
    """
    digits = kind.digits
    s = (digits - 1) - e10
    exact = (s >= 0) & (s <= 22)

    hi, lo = _scale(x, s)  # x * 10**s in [10**(digits-1), 10**digits)
    ifl = np.floor(hi)
    f, fe = _two_sum(hi - ifl, lo)
    carry = np.floor(f)
    i0 = ifl.astype(np.int64) + carry.astype(np.int64)
    f -= carry  # x * 10**s == i0 + f (+ fe), 0 <= f < 1
    exact &= fe == 0
    inexact = ~exact

    # Half the gap to each neighbour float, scaled the same way (exact when s <= 22). At a
    # power of two the gap below is half the gap above.
    mant, ex = np.frexp(x)
    h_up = np.ldexp(np.ones_like(x), ex - kind.mant - 1)
    h_down = np.where(mant == 0.5, h_up * 0.5, h_up)
    h_up = _scale_plain(h_up, s)
    h_down = _scale_plain(h_down, s)
    # a halfway decimal reads back as x when x's significand is even (np.fmod is slow)
    even = (np.ldexp(mant, kind.mant).astype(np.int64) & 1) == 0

    # low: smallest integer above x*10**s - h_down (or at it, for a tie that reads back as x)
    g, ge = _two_sum(f, -h_down)
    gf = np.floor(g)
    low = i0 + gf.astype(np.int64) + 1
    r = g - gf
    undecided = inexact & ((r < _EPS) | (r > 1 - _EPS))
    on_int = exact & (r == 0)
    low -= on_int & (((ge == 0) & even) | (ge < 0))
    # high: largest integer below x*10**s + h_up (or at it, for a tie that reads back as x)
    g, ge = _two_sum(f, h_up)
    gc = np.ceil(g)
    high = i0 + gc.astype(np.int64) - 1
    r = gc - g
    undecided |= inexact & ((r < _EPS) | (r > 1 - _EPS))
    on_int = exact & (r == 0)
    high += on_int & (((ge == 0) & even) | (ge > 0))

    # Coarsest power of ten with a multiple in [low, high] (monotone in j, so count the hits).
    j = np.zeros(len(x), dtype=np.int64)
    for jj in range(1, digits + 1):
        p = _P10_INT[jj]
        hit = (high // p) * p >= low
        if not hit.any():
            break
        j += hit

    # Nearest multiple of 10**j to x*10**s: round i0 + f to the step (twice the excess over
    # the lower multiple, minus the step, compared with -2f).
    pj = _P10_INT[j]
    q = i0 // pj
    twice_excess = 2 * (i0 - q * pj) - pj
    half_a = twice_excess == 0  # i0 is exactly halfway: up if f > 0
    half_b = twice_excess == -1  # (step 1) i0 + 0.5 is halfway: up if f > 0.5
    up = (twice_excess >= 1) | (half_a & (f > 0)) | (half_b & (f > 0.5))
    tie = exact & ((half_a & (f == 0)) | (half_b & (f == 0.5)))
    up |= tie & (q % 2 == 1)
    near = inexact & ((half_a & (f <= _EPS)) | (half_b & (np.abs(f - 0.5) <= _EPS)))
    up &= ~near
    undecided |= near
    m = q + up
    c = m * pj
    undecided |= (c < low) | (c > high)
    return m, e10 - (digits - 1) + j, undecided


def _float_parts(v: np.ndarray) -> _Parts:
    """Split every value of a float32/float64 column into the pieces of its text."""
    kind = _F32 if v.dtype == np.float32 else _F64
    with np.errstate(invalid="ignore"):  # signalling NaNs
        a = np.abs(v.astype(np.float64))
    n = len(a)
    neg = np.signbit(v)
    finite = np.isfinite(a)
    nonzero = a > 0
    e10 = _exact_e10(np.where(finite & nonzero, a, 1.0), kind)
    fast = finite & nonzero & (e10 >= kind.emin) & (e10 <= kind.emax)

    m = np.zeros(n, dtype=np.int64)  # zeros (and rows left to repr) print as 0.0
    exp10 = np.zeros(n, dtype=np.int64)
    slow = finite & nonzero & ~fast
    if fast.all():
        m, exp10, undecided = _shortest(a, e10, kind)
        slow |= undecided
    elif fast.any():
        idx = np.flatnonzero(fast)
        mm, ee, undecided = _shortest(a[idx], e10[idx], kind)
        m[idx], exp10[idx] = mm, ee
        slow[idx[undecided]] = True

    k = np.searchsorted(_P10_INT, m, side="right")  # digits of m (1 for m == 0)
    point = k + exp10  # the value is 0.DIGITS * 10**point
    sci = (point > 16) | (point < -3)
    sci &= m != 0
    ipart = np.empty(n, dtype=np.int64)
    fpart = np.zeros(n, dtype=np.int64)
    flen = np.ones(n, dtype=np.int64)

    fixed_int = ~sci & (exp10 >= 0)
    ipart[fixed_int] = m[fixed_int] * _P10_INT[np.minimum(exp10[fixed_int], 18)]
    fixed_frac = ~sci & (exp10 < 0)
    fl = -exp10[fixed_frac]
    div = _P10_INT[np.minimum(fl, 18)]
    mf = m[fixed_frac]
    ipart[fixed_frac] = mf // div
    fpart[fixed_frac] = mf - ipart[fixed_frac] * div
    flen[fixed_frac] = fl
    div = _P10_INT[k[sci] - 1]
    ms = m[sci]
    ipart[sci] = ms // div
    fpart[sci] = ms - ipart[sci] * div
    flen[sci] = k[sci] - 1
    return _Parts(neg, ipart, fpart, flen, sci, point - 1, ~finite, slow)


def _repr_text(x: np.floating) -> bytes:
    """Reference text of one float: ``repr``, or for float32 the repr of its shortest
    float32 decimal (numpy's Dragon4 finds those digits)."""
    if isinstance(x, np.float32):
        return repr(float(np.format_float_scientific(x, unique=True))).encode()
    return repr(float(x)).encode()


# ----------------------------------------------------------------------------- segments


class Segment:
    """One field of a line. ``prepare(rows)`` looks at the rows of a batch and returns an
    object that knows its column ``width`` and can ``fill`` a view of that many columns."""

    def prepare(self, rows: slice) -> _Prepared:
        raise NotImplementedError


class _Prepared:
    width: int

    def fill(self, view: np.ndarray) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class Lit(Segment):
    """The same bytes on every line."""

    text: bytes

    def prepare(self, rows: slice) -> _Prepared:
        return _LitPrepared(self.text)


class _LitPrepared(_Prepared):
    def __init__(self, text: bytes) -> None:
        self.row = np.frombuffer(text, dtype=np.uint8)
        self.width = len(text)

    def fill(self, view: np.ndarray) -> None:
        view[:] = self.row


def _write_digits(
    view: np.ndarray, a: np.ndarray, pad: bool, shown: np.ndarray | None = None
) -> None:
    """Right-aligned decimal digits of non-negative ``a`` into ``view``'s columns. Leading
    zeros are NUL unless ``pad``; with ``shown`` (digits per row), exactly that many low
    digits are written, zeros included, and the columns left of them are NUL."""
    w = view.shape[1]
    q = a
    amin = int(a.min()) if len(a) else 0
    smin = int(shown.min()) if shown is not None and len(shown) else 0
    for c in range(w - 1, -1, -1):
        q10 = q // 10
        d = q - q10 * 10  # cheaper than q % 10
        d += 48
        k = w - 1 - c  # this column holds the digit of weight 10**k
        if shown is not None:
            if k >= smin:
                d *= shown > k
        elif not pad and 0 < k <= 18 and amin < _P10_INT[k]:
            d *= a >= _P10_INT[k]
        view[:, c] = d
        q = q10


def _int_width(a: np.ndarray) -> int:
    return len(str(int(a.max()))) if len(a) else 1


class IntCol(Segment):
    """Decimal integers; ``pad`` gives a fixed number of digits with leading zeros (dates)."""

    def __init__(self, values: np.ndarray, pad: int = 0) -> None:
        self.values = np.asarray(values, dtype=np.int64)
        self.pad = pad

    def prepare(self, rows: slice) -> _Prepared:
        return _IntPrepared(self.values[rows], self.pad)


class _IntPrepared(_Prepared):
    def __init__(self, v: np.ndarray, pad: int) -> None:
        self.neg = v < 0
        self.sign = bool(self.neg.any())
        self.a = np.abs(v)
        self.pad = pad
        self.digits = max(pad, _int_width(self.a))
        self.width = self.digits + self.sign

    def fill(self, view: np.ndarray) -> None:
        if self.sign:
            view[:, 0] = self.neg * np.uint8(45)  # "-"
        if self.pad:
            # at least `pad` digits (like %0Nd): rows with more digits show all of them
            ndigits = np.searchsorted(_P10_INT, self.a, side="right")
            _write_digits(view[:, self.sign :], self.a, True, np.maximum(ndigits, self.pad))
        else:
            _write_digits(view[:, self.sign :], self.a, False)


class TableCol(Segment):
    """One of a few fixed texts per row (month names, say), chosen by an index column."""

    def __init__(self, index: np.ndarray, texts: Sequence[bytes]) -> None:
        width = max(len(t) for t in texts)
        self.table = np.zeros((len(texts), width), dtype=np.uint8)
        for i, t in enumerate(texts):
            self.table[i, : len(t)] = np.frombuffer(t, dtype=np.uint8)
        self.index = np.asarray(index, dtype=np.intp)

    def prepare(self, rows: slice) -> _Prepared:
        return _TablePrepared(self.table[self.index[rows]])


class _TablePrepared(_Prepared):
    def __init__(self, rows: np.ndarray) -> None:
        self.rows = rows
        self.width = rows.shape[1]

    def fill(self, view: np.ndarray) -> None:
        view[:] = self.rows


class FloatCol(Segment):
    """float64 or float32 values as ``repr`` prints them; NaN and infinities per ``specials``."""

    def __init__(self, values: np.ndarray, specials: Specials) -> None:
        self.values = np.asarray(values)
        if self.values.dtype not in (np.float32, np.float64):
            self.values = self.values.astype(np.float64)
        self.specials = specials

    def prepare(self, rows: slice) -> _Prepared:
        return _FloatPrepared(self.values[rows], self.specials)


class _FloatPrepared(_Prepared):
    def __init__(self, v: np.ndarray, specials: Specials) -> None:
        self.v = v
        self.p = p = _float_parts(v)
        self.specials = specials
        self.wi = _int_width(p.ipart)
        self.wf = int(p.flen.max()) if len(v) else 1
        self.has_sci = bool(p.sci.any())
        self.we = 3 if self.has_sci and bool((np.abs(p.exp[p.sci]) >= 100).any()) else 2
        width = 1 + self.wi + 1 + self.wf + (2 + self.we if self.has_sci else 0)
        # patches: (row mask or indices, text) for rows the digits do not describe
        self.patches: list[tuple[np.ndarray, bytes]] = []
        if p.special.any():
            nan = np.isnan(v)
            for mask, text in (
                (nan, specials.nan),
                (p.special & ~nan & ~p.neg, specials.pos_inf),
                (p.special & ~nan & p.neg, specials.neg_inf),
            ):
                if mask.any():
                    self.patches.append((mask, text))
        for i in np.flatnonzero(p.slow).tolist():
            self.patches.append((np.array([i]), _repr_text(v[i])))
        self.width = max([width] + [len(t) for _, t in self.patches])

    def fill(self, view: np.ndarray) -> None:
        p = self.p
        view[:, 0] = p.neg * np.uint8(45)  # "-"
        c = 1
        _write_digits(view[:, c : c + self.wi], p.ipart, False)
        c += self.wi
        view[:, c] = (p.flen > 0) * np.uint8(46)  # "."
        c += 1
        if self.wf:
            # fraction digits right-aligned in the slot, flen of them (leading zeros too)
            _write_digits(view[:, c : c + self.wf], p.fpart, True, p.flen)
            c += self.wf
        if self.has_sci:
            view[:, c] = p.sci * np.uint8(101)  # "e"
            view[:, c + 1] = np.where(p.exp < 0, 45, 43) * p.sci  # "-" / "+"
            c += 2
            _write_digits(view[:, c : c + self.we], np.abs(p.exp), True)
            view[:, c : c + self.we] *= p.sci[:, None]
        for rows, text in self.patches:
            view[rows, :] = 0
            view[rows, : len(text)] = np.frombuffer(text, dtype=np.uint8)


# ----------------------------------------------------------------------------- assembly


def render_rows(segments: Sequence[Segment], n: int) -> bytes:
    """The lines ``segments`` describe for rows 0..n-1, concatenated."""
    out = []
    for start in range(0, n, BATCH):
        rows = slice(start, min(n, start + BATCH))
        prepared = [seg.prepare(rows) for seg in segments]
        width = sum(p.width for p in prepared)
        mat = np.zeros((rows.stop - rows.start, width), dtype=np.uint8)
        c = 0
        for p in prepared:
            p.fill(mat[:, c : c + p.width])
            c += p.width
        out.append(mat.tobytes().translate(None, b"\0"))
    return out[0] if len(out) == 1 else b"".join(out)


def float_strings(values: np.ndarray, specials: Specials) -> list[bytes]:
    """Text of each value (for callers that need them one by one, e.g. waveform elements)."""
    n = len(values)
    if n == 0:
        return []
    return render_rows([FloatCol(values, specials), Lit(b"\n")], n).split(b"\n")[:-1]


def float_text(x: float, specials: Specials, float32: bool = False) -> str:
    """Text of one value, the same as :class:`FloatCol` gives (slow path, single values)."""
    if math.isnan(x):
        return specials.nan.decode()
    if math.isinf(x):
        return (specials.pos_inf if x > 0 else specials.neg_inf).decode()
    if float32:
        return _repr_text(np.float32(x)).decode()
    return repr(float(x))
