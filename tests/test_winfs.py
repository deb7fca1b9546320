"""The test harness for Windows' naming rules (tests/winfs.py, conftest's ntfs fixtures and
``--storage-fs``): the mounts really enforce the rules the storage tests rely on."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from . import winfs

# each is refused by Windows (and by ntfs-3g with windows_names) as a file name
REFUSED = [
    "a:b",
    'a"b',
    "a*b",
    "a<b",
    "a>b",
    "a?b",
    "a|b",
    "a\x01b",
    "dot.",
    "space ",
    "CON",
    "COM1",
    "lpt9",
    "con.txt",
]


def _refused(folder: Path, name: str) -> bool:
    try:
        (folder / name).touch()
    except OSError as e:
        assert e.errno == errno.EINVAL, e
        return True
    return False


@pytest.mark.parametrize("name", REFUSED, ids=ascii)
def test_ntfs_root_refuses_what_windows_refuses(ntfs_root: Path, name: str) -> None:
    assert _refused(ntfs_root, name)


def test_ntfs_root_accepts_the_rest_and_is_case_sensitive(ntfs_root: Path) -> None:
    assert not os.listdir(ntfs_root)  # a fresh folder per test
    for name in ("Ab", "ab", "é ü.pb", "a;b=c,d", "x" * 255, "CONSOLE", "com10"):
        (ntfs_root / name).touch()
    assert len(os.listdir(ntfs_root)) == 7


@pytest.mark.parametrize("name", ["a:b", "CON", "dot."], ids=ascii)
def test_ntfs_ci_root_has_the_same_rules(ntfs_ci_root: Path, name: str) -> None:
    assert _refused(ntfs_ci_root, name)


def test_ntfs_ci_root_is_case_insensitive(ntfs_ci_root: Path) -> None:
    (ntfs_ci_root / "Ab").mkdir()
    (ntfs_ci_root / "AB" / "File.pb").write_bytes(b"x")
    assert (ntfs_ci_root / "ab" / "FILE.PB").read_bytes() == b"x"
    with pytest.raises(FileExistsError):
        (ntfs_ci_root / "aB").mkdir()
    assert os.listdir(ntfs_ci_root) == ["ab"]  # lowntfs-3g lists names in lower case


def test_tmp_path_is_on_the_storage_fs(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    variant = pytestconfig.getoption("storage_fs")
    if variant is None:
        pytest.skip("checks the --storage-fs option; not given")
    assert tmp_path.is_relative_to(Path(pytestconfig.option.basetemp).resolve())
    assert _refused(tmp_path, "a:b")
    (tmp_path / "Ab").touch()
    assert (tmp_path / "aB").exists() == winfs.VARIANTS[variant]


def test_unavailable_says_why(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(winfs.sys, "platform", "linux")
    monkeypatch.setattr(winfs.os, "geteuid", lambda: 1000, raising=False)
    with pytest.raises(winfs.MountUnavailable, match="needs root"):
        winfs.mount_ntfs(tmp_path / "w")
    monkeypatch.setattr(winfs.os, "geteuid", lambda: 0)
    monkeypatch.setattr(winfs, "_tool", lambda name: None)
    if Path("/dev/fuse").exists():
        with pytest.raises(winfs.MountUnavailable, match="mkntfs and ntfs-3g not installed"):
            winfs.mount_ntfs(tmp_path / "w")
        with pytest.raises(winfs.MountUnavailable, match="lowntfs-3g not installed"):
            winfs.mount_ntfs(tmp_path / "w", ignore_case=True)
    else:
        with pytest.raises(winfs.MountUnavailable, match="/dev/fuse is missing"):
            winfs.mount_ntfs(tmp_path / "w")
    assert not (tmp_path / "w").exists()
