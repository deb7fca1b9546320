"""The vectorised number formatter against Python's own ``repr``, value by value."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pvarchiver.retrieval.formats._numtext import (
    JAVA_SPECIALS,
    JSON_SPECIALS,
    FloatCol,
    IntCol,
    Lit,
    TableCol,
    float_strings,
    float_text,
    render_rows,
)


def ref64(x: float) -> str:
    return repr(x) if math.isfinite(x) else "null"


def ref32(x: np.float32) -> str:
    """Python-style text of a float32's shortest decimal (numpy's Dragon4 gives the digits)."""
    if not np.isfinite(x):
        return "null"
    return repr(float(np.format_float_scientific(x, unique=True)))


def texts(values: np.ndarray) -> list[str]:
    return [b.decode() for b in float_strings(values, JSON_SPECIALS)]


def distributions64(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    nudge = 1 + rng.integers(-3, 4, n) * 2.0**-52
    return {
        "normal": rng.normal(size=n) * 100,
        "rounded": np.round(rng.normal(size=n) * 100, rng.integers(0, 8)),
        "float32-ish": rng.normal(size=n).astype(np.float32).astype(np.float64) * 100,
        "log-uniform": np.exp(rng.uniform(-75, 145, n)) * rng.choice([-1, 1], n),
        "integers": np.floor(rng.normal(size=n) * 10.0 ** rng.integers(0, 18, n)),
        "any bits": rng.integers(0, 2**64, n, dtype=np.uint64).view(np.float64),
        "powers of two": np.ldexp(1.0, rng.integers(-1074, 1024, n)),
        "near powers of ten": 10.0 ** rng.integers(-30, 62, n) * nudge,
        "tiny ints": rng.integers(-1000, 1000, n).astype(np.float64) / 8,
    }


@pytest.mark.parametrize("seed", range(3))
def test_float64_matches_repr_on_many_values(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for name, values in distributions64(rng, 100_000).items():
        got = texts(values)
        want = [ref64(x) for x in values.tolist()]
        bad = [(x, g, w) for x, g, w in zip(values.tolist(), got, want, strict=True) if g != w]
        assert not bad, f"{name}: {bad[:5]}"


@pytest.mark.parametrize("seed", range(3))
def test_float32_matches_shortest_float32_text(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    cases = {
        "normal": (rng.normal(size=50_000) * 100).astype(np.float32),
        "any bits": rng.integers(0, 2**32, 50_000, dtype=np.uint64)
        .astype(np.uint32)
        .view(np.float32),
        "log-uniform": np.exp(rng.uniform(-85, 88, 50_000)).astype(np.float32),
        "large integers": rng.integers(2**24, 2**31, 50_000).astype(np.float32),
    }
    for name, values in cases.items():
        got = texts(values)
        want = [ref32(x) for x in values]
        bad = [(x, g, w) for x, g, w in zip(values, got, want, strict=True) if g != w]
        assert not bad, f"{name}: {bad[:5]}"


def test_edge_values() -> None:
    values = np.array(
        [
            0.0, -0.0, 1.0, -1.0, 0.1, 0.5, 1e16, 1e-5, 1e-4, 1e15, 9999999999999998.0,
            1234567890123456.0, 12345678901234567.0, 2.0**53, 2.0**53 + 2, 2.0**54, 2.0**60,
            5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 1e22, 1e23, 1 / 3, 2 / 3,
            123456.789, 1e-7, 0.3, 100.0, 1e100, 9.999999999999999e22,
        ]
    )  # fmt: skip
    assert texts(values) == [repr(x) for x in values.tolist()]
    assert texts(np.array([np.nan, np.inf, -np.inf])) == ["null"] * 3
    java = [b.decode() for b in float_strings(np.array([np.nan, np.inf, -np.inf]), JAVA_SPECIALS)]
    assert java == ["NaN", "Infinity", "-Infinity"]
    assert texts(np.array([0.1], dtype=np.float32)) == ["0.1"]  # not 0.10000000149011612
    assert texts(np.array([16777217.0, 3.4028235e38, 1e-45], dtype=np.float32)) == [
        "16777216.0",
        "3.4028235e+38",
        "1e-45",
    ]


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=40))
def test_float64_property(xs: list[float]) -> None:
    assert texts(np.array(xs)) == [ref64(x) for x in xs]


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.floats(width=32, allow_nan=False), min_size=1, max_size=40))
def test_float32_property(xs: list[float]) -> None:
    values = np.array(xs, dtype=np.float32)
    assert texts(values) == [ref32(x) for x in values]


@given(st.floats(allow_nan=True))
def test_single_value_helper_agrees(x: float) -> None:
    assert float_text(x, JSON_SPECIALS) == texts(np.array([x]))[0]


@settings(deadline=None)
@given(st.lists(st.integers(-(2**62), 2**62), min_size=1, max_size=50))
def test_integers_and_literals(xs: list[int]) -> None:
    out = render_rows([Lit(b"<"), IntCol(np.array(xs)), Lit(b">\n")], len(xs))
    assert out.decode() == "".join(f"<{x}>\n" for x in xs)


def test_zero_padded_and_table_columns() -> None:
    out = render_rows(
        [
            TableCol(np.array([0, 2, 1]), [b"a", b"bb", b"ccc"]),
            IntCol(np.array([5, 10, 123]), pad=2),
        ],
        3,
    )
    assert out == b"a05ccc10bb123"


def test_rows_beyond_one_batch() -> None:
    n = 40_000  # more than one internal batch
    values = np.arange(n) / 7.0
    out = render_rows([FloatCol(values, JSON_SPECIALS), Lit(b",")], n)
    assert out.decode().split(",")[:-1] == [repr(x) for x in values.tolist()]
