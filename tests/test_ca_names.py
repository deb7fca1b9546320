"""validate_pv_name: what an archiver accepts as a PV name, and the reasons it gives."""

from __future__ import annotations

import pytest

from pvarchiver.ca.names import validate_pv_name


@pytest.mark.parametrize(
    "name",
    [
        "SR:CURRENT",
        "a-b_c+d:e[1]<2>;3/4,5#6{7}^8",
        "X" * 60,
        "IOC:AI.HIHI",
        "IOC:AI.VAL",
        "IOC:STR.VAL$",
        'IOC:AI.VAL{"dbnd":{"abs":1.5}}',
        "IOC:WF.VAL[2:5]",
        "IOC:WF.VAL[-3:]",
        "X" * 60 + ".DESC",
    ],
)
def test_valid_names(name: str) -> None:
    assert validate_pv_name(name) is None


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "empty"),
        (" SR:CURRENT", "white space"),
        ("SR:CURRENT\n", "white space"),
        ("SR: CURRENT", "a space at position 3"),
        ("SR:\x01CUR", "control character 0x01"),
        ("SR:\x7fCUR", "control character 0x7f"),
        ("SR:CÜR", "non-ASCII"),
        ("SR:CUR\"X", "character '\"'"),
        ("X" * 61, "longer than 60"),
        ("X" * 501, "longer than 500"),
        (".HIHI", "no record part"),
        ("IOC:AI.", "no field name"),
        ("IOC:AI.1AB", "cannot start a field name"),
        ("IOC:AI.VAL.X", "invalid field modifier"),
        ("IOC:AI.VAL X", "a space after the field name"),
        ('IOC:AI.{"a":\x02}', "cannot start a field name"),
        ('IOC:AI.VAL{"a":\x02}', "control character 0x02 in the channel filter"),
        (None, "must be a string"),
    ],
)
def test_invalid_names_say_why(name: object, reason: str) -> None:
    problem = validate_pv_name(name)
    assert problem is not None and reason in problem, problem
