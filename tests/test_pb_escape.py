"""PlainPB line escaping (aa.md 2.4 point 2): 0x1B -> 1B 01, 0x0A -> 1B 02, 0x0D -> 1B 03."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pvarchiver.pb import EscapeError, escape, unescape

ESC, LF, CR = 0x1B, 0x0A, 0x0D

# bytes biased towards the three special values, so that runs of them are common
_special_heavy = st.lists(
    st.one_of(st.sampled_from([ESC, LF, CR, 0x01, 0x02, 0x03]), st.integers(0, 255)),
    max_size=200,
).map(bytes)
_any_bytes = st.one_of(st.binary(max_size=300), _special_heavy)


# ----------------------------------------------------------------------------- escape


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        (b"\x1b", b"\x1b\x01"),
        (b"\n", b"\x1b\x02"),
        (b"\r", b"\x1b\x03"),
        (b"a\x1bb", b"a\x1b\x01b"),
        (b"a\nb", b"a\x1b\x02b"),
        (b"a\rb", b"a\x1b\x03b"),
        (b"\r\n", b"\x1b\x03\x1b\x02"),
        (b"\x1b\x1b", b"\x1b\x01\x1b\x01"),
    ],
)
def test_escape_each_code(raw: bytes, escaped: bytes) -> None:
    assert escape(raw) == escaped
    assert unescape(escaped) == raw


def test_escape_replaces_esc_before_lf_and_cr() -> None:
    # Were LF/CR replaced first, their new 0x1B would be escaped again to 1B 01 02 / 1B 01 03.
    assert escape(b"\n\x1b\r") == b"\x1b\x02\x1b\x01\x1b\x03"
    assert escape(b"\n") == b"\x1b\x02"
    assert escape(b"\r") == b"\x1b\x03"
    # a raw ESC followed by a byte that looks like an escape code stays unambiguous
    assert escape(b"\x1b\x02") == b"\x1b\x01\x02"
    assert unescape(b"\x1b\x01\x02") == b"\x1b\x02"


def test_escape_leaves_other_bytes_alone() -> None:
    other = bytes(b for b in range(256) if b not in (ESC, LF, CR))
    assert escape(other) == other
    assert unescape(other) == other


def test_empty_input() -> None:
    assert escape(b"") == b""
    assert unescape(b"") == b""
    assert isinstance(unescape(b""), bytes)


# ----------------------------------------------------------------------------- unescape


@pytest.mark.parametrize("code", [c for c in range(256) if c not in (1, 2, 3)])
def test_unknown_escape_code_is_lenient(code: int) -> None:
    # The AA's LineEscaper passes an unknown code byte through as-is.
    assert unescape(bytes([ESC, code])) == bytes([code])
    assert unescape(b"x" + bytes([ESC, code]) + b"y") == b"x" + bytes([code]) + b"y"


def test_escaped_esc_followed_by_esc_code_byte() -> None:
    # 1B 1B is "ESC with unknown code 0x1B" -> 0x1B; the second 1B does not start a new escape
    assert unescape(b"\x1b\x1b\x02") == b"\x1b\x02"


@pytest.mark.parametrize(
    "line",
    [b"\x1b", b"abc\x1b", b"\x1b\x01\x1b", b"\x1b\x02\x1b\x03\x1b", b"\x1b\x1b\x1b"],
)
def test_trailing_lone_esc_raises(line: bytes) -> None:
    with pytest.raises(EscapeError):
        unescape(line)


def test_escape_error_is_a_value_error() -> None:
    assert issubclass(EscapeError, ValueError)


def test_lone_esc_only_an_error_at_the_very_end() -> None:
    # 1B 1B: the second 1B is the code byte, not a lone escape
    assert unescape(b"\x1b\x1b") == b"\x1b"
    assert unescape(b"ab\x1b\x03") == b"ab\r"


# ----------------------------------------------------------------------------- properties


@settings(max_examples=300)
@given(_any_bytes)
def test_round_trip(raw: bytes) -> None:
    assert unescape(escape(raw)) == raw


@settings(max_examples=300)
@given(_any_bytes)
def test_escaped_output_is_line_safe(raw: bytes) -> None:
    out = escape(raw)
    assert LF not in out
    assert CR not in out
    i = out.find(ESC)
    while i >= 0:
        assert i + 1 < len(out), "escaped output ends with a lone ESC"
        assert out[i + 1] in (1, 2, 3)
        i = out.find(ESC, i + 2)
    specials = raw.count(ESC) + raw.count(LF) + raw.count(CR)
    assert len(out) == len(raw) + specials


@settings(max_examples=200)
@given(
    st.lists(
        st.one_of(
            st.sampled_from([b"\x1b\x01", b"\x1b\x02", b"\x1b\x03"]),
            st.integers(0, 255).filter(lambda b: b not in (ESC, LF, CR)).map(lambda b: bytes([b])),
        )
    )
)
def test_canonical_escaped_lines_re_escape_identically(tokens: list[bytes]) -> None:
    line = b"".join(tokens)
    assert escape(unescape(line)) == line
