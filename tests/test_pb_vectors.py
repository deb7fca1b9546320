"""Decode and byte-exactly re-encode PlainPB files written by the Java Archiver Appliance.

The files live outside the repository (``../shared/vectors/aa-upstream/``, see its README);
``PVARCHIVER_AA_VECTORS`` may point elsewhere. Known facts come from aa.md 2.4.2 and that README.
"""

from __future__ import annotations

import os
import struct
from calendar import timegm
from pathlib import Path

import pytest

from pvarchiver.pb import (
    PayloadType,
    decode_header,
    decode_line,
    header_line,
    sample_line,
    unescape,
    year_start,
)

VECTORS = Path(
    os.environ.get(
        "PVARCHIVER_AA_VECTORS",
        Path(__file__).resolve().parents[2] / "shared" / "vectors" / "aa-upstream",
    )
)

# file -> (pvname, number of samples, headers)
KNOWN = {
    "lrm01_raw.pb": ("LN-AM{RadMon:2}DoseRate-I", 1, {"EGU": "mR/h", "PREC": "2"}),
    "sig1-wo-adel.pb": ("TST-CT{}Sig:1-I", 37, {"PREC": "0"}),
    "sig2-w-adel.pb": ("TST-CT{}Sig:2-I", 23, {"PREC": "0"}),
}

pytestmark = pytest.mark.skipif(
    not VECTORS.is_dir(), reason=f"AA test vectors not found at {VECTORS}"
)


def _files() -> list[str]:
    if not VECTORS.is_dir():
        return sorted(KNOWN)
    return sorted(p.name for p in VECTORS.glob("*.pb"))


def _read(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


def _split(data: bytes) -> list[bytes]:
    assert data.endswith(b"\n"), "a PlainPB file ends with LF"
    return data[:-1].split(b"\n")


def _decode(name: str):
    lines = _split(_read(name))
    info = decode_header(unescape(lines[0]))
    samples = [decode_line(info.type, info.year, line) for line in lines[1:]]
    return lines, info, samples


def _utc(y: int, mo: int, d: int, h: int, mi: int, s: int) -> int:
    return timegm((y, mo, d, h, mi, s, 0, 0, 0))


def test_all_known_vectors_present() -> None:
    assert set(KNOWN) <= set(_files())


# ----------------------------------------------------------------------------- every file


@pytest.mark.parametrize("name", _files())
def test_file_re_encodes_byte_for_byte(name: str) -> None:
    data = _read(name)
    lines, info, samples = _decode(name)
    assert header_line(info) == lines[0] + b"\n"
    for line, s in zip(lines[1:], samples, strict=True):
        assert sample_line(info.type, info.year, s) == line + b"\n"
    rebuilt = header_line(info) + b"".join(sample_line(info.type, info.year, s) for s in samples)
    assert rebuilt == data


@pytest.mark.parametrize("name", _files())
def test_file_structure(name: str) -> None:
    data = _read(name)
    _, info, samples = _decode(name)
    assert data.endswith(b"\n")
    assert data.count(b"\n") == len(samples) + 1  # `wc -l` = samples + 1
    assert b"\r" not in data
    # every escape in the file is one of the three defined codes
    i = data.find(b"\x1b")
    while i >= 0:
        assert data[i + 1] in (1, 2, 3)
        i = data.find(b"\x1b", i + 2)
    # README: every vector is SCALAR_DOUBLE, year 2014, elementCount 1
    assert info.type is PayloadType.SCALAR_DOUBLE
    assert info.year == 2014
    assert info.element_count == 1
    assert "PREC" in info.headers
    # samples are strictly increasing in time and inside the header's year
    stamps = [s.timestamp for s in samples]
    assert stamps == sorted(set(stamps))
    for s in samples:
        assert year_start(2014) <= s.secs < year_start(2015)
        assert 0 <= s.nanos <= 999_999_999
        assert isinstance(s.val, float)


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_known_header_and_counts(name: str) -> None:
    pvname, count, headers = KNOWN[name]
    _, info, samples = _decode(name)
    assert info.pvname == pvname
    assert info.headers == headers
    assert len(samples) == count


# ----------------------------------------------------------------------------- sig1 (2.4.2)


def test_sig1_header_bytes() -> None:
    lines = _split(_read("sig1-wo-adel.pb"))
    expected = (
        b"\x08\x06"
        + b"\x12\x0f"
        + b"TST-CT{}Sig:1-I"
        + b"\x18\xde\x0f"
        + b"\x20\x01"
        + b"\x7a\x09\x1b\x02\x04PREC\x12\x010"
    )
    assert lines[0] == expected


def test_sig1_first_sample() -> None:
    lines, _, samples = _decode("sig1-wo-adel.pb")
    assert lines[1] == bytes.fromhex("08 a9 80 95 0e 10 f6 ca 9f 7a 19 00 00 00 00 00 00 f0 3f")
    first = samples[0]
    assert first.secs - year_start(2014) == 29704233
    assert first.nanos == 256370038
    assert first.val == 1.0
    # 2014-12-10T19:10:33.256Z
    assert first.secs == _utc(2014, 12, 10, 19, 10, 33)
    assert first.nanos // 1_000_000 == 256
    assert (first.severity, first.status) == (0, 0)
    assert first.fields is None


def test_sig1_last_sample_fieldvalues_and_escapes() -> None:
    lines, _, samples = _decode("sig1-wo-adel.pb")
    last = samples[-1]
    assert last.fields == {"cnxlostepsecs": "1418238772", "cnxregainedepsecs": "1418238776"}
    # field-7 tag, length 27 (0x1B), FieldValue tag 0x0A, name length 13 (0x0D), value length 10
    assert b"\x3a\x1b\x01\x1b\x02\x1b\x03cnxlostepsecs\x12\x1b\x021418238772" in lines[-1]
    assert all(s.fields is None for s in samples[:-1])


def test_sig1_has_alarm_samples() -> None:
    # severity/status are only written when non-zero; this file has both kinds of samples
    _, _, samples = _decode("sig1-wo-adel.pb")
    assert any(s.severity == 0 and s.status == 0 for s in samples)
    assert any(s.severity != 0 for s in samples)
    assert any(s.status != 0 for s in samples)


def test_sig2_is_the_same_signal_with_fewer_samples() -> None:
    _, _, s1 = _decode("sig1-wo-adel.pb")
    _, _, s2 = _decode("sig2-w-adel.pb")
    assert len(s2) < len(s1)
    assert s2[0].timestamp == s1[0].timestamp
    assert s2[-1].fields == s1[-1].fields


# ----------------------------------------------------------------------------- lrm01


def test_lrm01_sample() -> None:
    lines, info, samples = _decode("lrm01_raw.pb")
    assert info.headers["EGU"] == "mR/h"
    assert info.headers["PREC"] == "2"
    (s,) = samples
    assert struct.pack("<d", s.val) == struct.pack("<d", -0.09)
    # 2014-12-08T06:21:07.601158377Z
    assert s.secs == _utc(2014, 12, 8, 6, 21, 7)
    assert s.nanos == 601158377
    # the double contains a 0x0A byte, which is written escaped
    raw_double = struct.pack("<d", -0.09)
    assert b"\n" in raw_double
    assert _escape_ref(raw_double) in lines[1]


def _escape_ref(raw: bytes) -> bytes:
    return raw.replace(b"\x1b", b"\x1b\x01").replace(b"\n", b"\x1b\x02").replace(b"\r", b"\x1b\x03")
