"""PV name -> file key under the AA's settings and the portable (Windows) spelling; the
properties file; the choice of naming from a folder probe. Pure, except the probe of an
ordinary temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvarchiver.properties import PropertiesError, archappl_properties, parse_properties
from pvarchiver.storage.batch import append_samples
from pvarchiver.storage.naming import (
    PROP_SEPARATORS,
    PROP_TERMINATOR,
    KeyNaming,
    NamingSettings,
    UnmappableName,
    portable,
    unportable,
)
from pvarchiver.storage.partitions import Granularity
from pvarchiver.storage.probe import FolderProbe, StoreFolderError, choose_naming, probe_folder
from pvarchiver.storage.url import parse_store_url

AA = KeyNaming()
WIN = KeyNaming(portable=True)


def test_aa_defaults_byte_for_byte() -> None:
    assert AA.key("EIOC:LI30:MP01:HEARTBEAT") == "EIOC/LI30/MP01/HEARTBEAT:"
    assert AA.key("TST-CT{}Sig:1-I") == "TST/CT{}Sig/1/I:"
    assert AA.key("pva://X:Y") == "X/Y:"
    # characters Linux accepts stay as the AA writes them there
    assert AA.key('A:B<1>"?') == 'A/B<1>"?:'


def test_portable_names_use_no_character_windows_refuses() -> None:
    key = WIN.key("EIOC:LI30:MP01:HEARTBEAT")
    assert key == "EIOC/LI30/MP01/HEARTBEAT\uf03a"
    assert WIN.file_terminator == "\uf03a"
    for pv in ("A:B<1>", 'Q:"x"', "R:a|b", "S:*?", "T:x\\y".replace("\\", "")):
        k = WIN.key(pv)
        assert not set(k) & set('"*:<>?|\\'), k
        assert unportable(k) == AA.key(pv)


def test_portable_reserved_device_names_and_trailing_dots() -> None:
    # a folder component that is a device name (any case, with or without extension)
    assert WIN.key("CON:TEMP") == "CO\uf04e/TEMP\uf03a"
    assert WIN.key("com1:X") == "com\uf031/X\uf03a"
    assert WIN.key("LPT9.A:X") == "LPT\uf039.A/X\uf03a"
    assert WIN.key("CONSOLE:X") == "CONSOLE/X\uf03a"  # only the exact names are reserved
    # the file name CON:2012.pb is not a device name; CON.HIHI:2012.pb would be
    assert WIN.key("X:CON") == "X/CON\uf03a"
    assert WIN.key("X:CON.HIHI") == "X/CO\uf04e.HIHI\uf03a"
    # Windows strips a folder's trailing dots and spaces: they are mapped instead
    assert portable("A./B") == "A\uf02e/B"
    for pv in ("CON:TEMP", "com1:X", "X:CON.HIHI"):
        assert unportable(WIN.key(pv)) == AA.key(pv)


@pytest.mark.parametrize("naming", [AA, WIN])
def test_terminator_keeps_prefixes_apart(naming: KeyNaming) -> None:
    a, b = naming.key("X:CTRD_V"), naming.key("X:CTRD_V_BOOK")
    assert not b.startswith(a)


def test_keys_never_leave_the_store_folder() -> None:
    assert AA.key(":A") == "A:"  # the AA's path join drops the empty component too
    assert AA.key("A::B") == "A/B:"
    for bad in ("", "A/B", "A\\B", "..:X", "X:..", "A\nB", "ca://"):
        with pytest.raises(UnmappableName):
            AA.key(bad)


def test_long_components_are_refused_with_the_reason() -> None:
    with pytest.raises(UnmappableName, match="too long"):
        AA.key("X:" + "A" * 240)
    AA.key("X:" + "A" * 200)


def test_site_separators_and_terminator() -> None:
    n = KeyNaming(separators=r"[\:]", terminator=";")
    assert n.key("A:B-C") == "A/B-C;"
    assert KeyNaming(separators="", terminator=":").key("A:B") == "A:B:"
    with pytest.raises(ValueError, match="one character"):
        KeyNaming(terminator="::")
    with pytest.raises(ValueError, match="regex"):
        KeyNaming(separators="[")


def test_properties_file_read_as_java_reads_it(tmp_path: Path) -> None:
    text = (
        "# site settings\n"
        f"{PROP_SEPARATORS} = [\\\\:\\\\-]\n"
        f"{PROP_TERMINATOR}=\\u003b\n"
        "long.value = a\\\n    b\n"
        "! comment\n"
        "spaced key  value\n"
    )
    props = parse_properties(text)
    assert props[PROP_SEPARATORS] == r"[\:\-]"
    assert props[PROP_TERMINATOR] == ";"
    assert props["long.value"] == "ab"
    assert props["spaced"] == "key  value"
    s = NamingSettings.from_properties(props, "site.properties")
    assert (s.separators, s.terminator) == (r"[\:\-]", ";")
    assert "site.properties" in s.terminator_source
    f = tmp_path / "archappl.properties"
    f.write_text(text)
    assert archappl_properties({"ARCHAPPL_PROPERTIES_FILENAME": str(f)})[0] == props
    assert archappl_properties({}) == ({}, "")
    with pytest.raises(PropertiesError, match="no such file"):
        archappl_properties({"ARCHAPPL_PROPERTIES_FILENAME": str(tmp_path / "typo")})
    with pytest.raises(ValueError, match="one character"):
        NamingSettings.from_properties({PROP_TERMINATOR: "ab"})


def _config(extra: str = ""):
    return parse_store_url(
        f"pb://localhost?name=LTS&rootFolder=/arch/lts&partitionGranularity=PARTITION_YEAR{extra}"
    )


def _probe(refused: str = "", ci: bool = False, existing: str | None = None) -> FolderProbe:
    return FolderProbe(Path("/arch/lts"), frozenset(refused), ci, existing, "X/Y?2012.pb")


def test_choose_naming_adapts_where_the_setting_allows() -> None:
    default = NamingSettings()
    assert choose_naming(_config(), default, _probe()) == KeyNaming()
    # a folder with Windows' rules: portable names, the terminator spelled U+F03A
    n = choose_naming(_config(), default, _probe(':"*<>?|', ci=True))
    assert (n.portable, n.file_terminator, n.case_insensitive) == (True, "\uf03a", True)
    # a store written on Windows, now on Linux: its names are kept
    assert choose_naming(_config(), default, _probe(existing="\uf03a")).portable
    # the URL's terminator wins over the properties file
    site = NamingSettings(terminator=";", terminator_source="archappl.properties")
    assert choose_naming(_config("&terminator=%23"), site, _probe()).terminator == "#"
    assert choose_naming(_config(), site, _probe()).terminator == ";"


def test_choose_naming_refuses_with_one_line_saying_what_to_change() -> None:
    site = NamingSettings(terminator=";", terminator_source="archappl.properties")
    with pytest.raises(StoreFolderError) as e:
        choose_naming(_config(), site, _probe(refused=";"))
    msg = str(e.value)
    assert "\n" not in msg and "LTS" in msg and "/arch/lts" in msg and "';'" in msg
    assert "archappl.properties" in msg and PROP_TERMINATOR in msg
    # the files already there use another terminator: writing beside them would split PVs
    with pytest.raises(StoreFolderError, match="rekey"):
        choose_naming(_config(), site, _probe(existing=":"))
    with pytest.raises(StoreFolderError, match="rekey"):
        choose_naming(_config(), NamingSettings(), _probe(':"*<>?|', existing=":"))
    # a folder that refuses even the portable terminator (a FAT stick without Unicode)
    with pytest.raises(StoreFolderError, match="refuses"):
        choose_naming(_config(), NamingSettings(), _probe(':"*<>?|\uf03a'))


def test_probe_of_an_ordinary_linux_folder(tmp_path: Path) -> None:
    year = Granularity.PARTITION_YEAR
    p = probe_folder(tmp_path / "new" / "lts", year)
    assert p.refused == frozenset() and not p.case_insensitive
    assert p.existing_terminator is None
    assert [x.name for x in (tmp_path / "new" / "lts").iterdir()] == []  # no scratch left
    (tmp_path / "new" / "lts" / "notes-v2.pb").write_bytes(b"")  # not a data file's name
    assert probe_folder(tmp_path / "new" / "lts", year).existing_terminator is None
    f = tmp_path / "new" / "lts" / "A" / "B" / "HEART;2012.pb"
    f.parent.mkdir(parents=True)
    f.write_bytes(b"")
    p = probe_folder(tmp_path / "new" / "lts", year)
    assert p.existing_terminator == ";" and p.existing_example == "A/B/HEART;2012.pb"


def test_validate_checks_the_partition_of_portable_names(tmp_path: Path) -> None:
    """pb validate knows a file's partition whatever the terminator's spelling."""
    from pvarchiver.pb import PayloadType, Sample
    from pvarchiver.storage.store import PlainPBStore
    from pvarchiver.storage.validate import validate_file

    for naming in (KeyNaming(), KeyNaming(portable=True), KeyNaming(terminator=";")):
        url = f"pb://localhost?name=STS&rootFolder={tmp_path / 'sts'}&partitionGranularity="
        st = PlainPBStore(parse_store_url(url + "PARTITION_HOUR"), naming=naming)
        t0 = 1_709_294_400  # 2024-03-01T12:00:00Z
        append_samples(st, "V:X", PayloadType.SCALAR_DOUBLE, [Sample(t0 + 10, 0, 1.0)])
        (path,) = [p for p in (tmp_path / "sts").rglob("*.pb")]
        # move the file under the previous hour's name: its sample is outside that partition
        wrong = path.with_name(path.name.replace("2024_03_01_12", "2024_03_01_11"))
        path.rename(wrong)
        kinds = {p.kind for p in validate_file(wrong).problems}
        assert "outside-partition" in kinds, (naming, kinds)
        wrong.unlink()
