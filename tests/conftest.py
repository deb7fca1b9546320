"""Shared fixtures: stores under a temporary storage root, with the AA's default layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvarchiver.storage import PlainPBStore

from .helpers.stores import make_store
from .requirements import require, strict
from .winfs import VARIANTS, MountUnavailable, SessionMounts, fresh_folder


@pytest.fixture
def sts(tmp_path: Path) -> PlainPBStore:
    return make_store(tmp_path, "STS", "PARTITION_HOUR")


@pytest.fixture
def stores(tmp_path: Path) -> list[PlainPBStore]:
    return [
        make_store(tmp_path, "STS", "PARTITION_HOUR", "&consolidateOnShutdown=true"),
        make_store(tmp_path, "MTS", "PARTITION_DAY", "&hold=2&gather=1"),
        make_store(tmp_path, "LTS", "PARTITION_YEAR"),
    ]


# --- Windows' file-naming rules (issue 13): NTFS through ntfs-3g, see tests/winfs.py ---------
#
# `ntfs_root` / `ntfs_ci_root`: a fresh folder per test on a session-wide NTFS mount
# (windows_names; ntfs_ci_root also ignore_case). `--storage-fs=ntfs|ntfs-ci` puts pytest's
# basetemp on such a mount, so every tmp_path of the run lives under Windows' naming rules.
# Where this machine cannot mount: skip (fixtures) or exit 0 (option) with the reason; under
# CI (CI=true) fail instead.

_MOUNTS = pytest.StashKey[SessionMounts]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--storage-fs",
        choices=sorted(VARIANTS),
        default=None,
        help="put basetemp (every tmp_path) on an NTFS image mounted with ntfs-3g "
        "windows_names (ntfs) or lowntfs-3g windows_names,ignore_case (ntfs-ci); "
        "needs root, /dev/fuse and ntfs-3g",
    )


@pytest.hookimpl(tryfirst=True)  # before the tmpdir plugin reads config.option.basetemp
def pytest_configure(config: pytest.Config) -> None:
    mounts = SessionMounts()
    config.stash[_MOUNTS] = mounts
    variant = config.getoption("storage_fs", None)
    if variant is None:
        return
    if config.option.basetemp:
        raise pytest.UsageError("--storage-fs chooses basetemp itself: drop --basetemp")
    try:
        mnt = mounts.get(variant)
    except MountUnavailable as e:
        msg = f"--storage-fs={variant}: cannot mount the filesystem: {e.reason}"
        if strict():
            pytest.exit(f"{msg}; CI must run these tests", returncode=pytest.ExitCode.TESTS_FAILED)
        pytest.exit(f"{msg}; no test was run", returncode=pytest.ExitCode.OK)
    config.option.basetemp = str(mnt / "basetemp")


def pytest_unconfigure(config: pytest.Config) -> None:
    mounts = config.stash.get(_MOUNTS, None)
    if mounts is not None:
        mounts.close()


def pytest_report_header(config: pytest.Config) -> str | None:
    variant = config.getoption("storage_fs", None)
    if variant is None:
        return None
    how = "lowntfs-3g windows_names,ignore_case" if VARIANTS[variant] else "ntfs-3g windows_names"
    return f"storage-fs: {variant} ({how}), basetemp {config.option.basetemp}"


def _mounted(config: pytest.Config, variant: str) -> Path:
    try:
        return config.stash[_MOUNTS].get(variant)
    except MountUnavailable as e:
        require(False, f"no {variant} filesystem: {e.reason}")
        raise  # unreachable: require skipped or failed


@pytest.fixture(scope="session")
def ntfs_mount(pytestconfig: pytest.Config) -> Path:
    """The session's ntfs-3g windows_names mount (shared: use ``ntfs_root`` in a test)."""
    return _mounted(pytestconfig, "ntfs")


@pytest.fixture(scope="session")
def ntfs_ci_mount(pytestconfig: pytest.Config) -> Path:
    """The session's lowntfs-3g windows_names,ignore_case mount."""
    return _mounted(pytestconfig, "ntfs-ci")


@pytest.fixture
def ntfs_root(ntfs_mount: Path, request: pytest.FixtureRequest) -> Path:
    """A fresh, empty folder where Windows' naming rules apply (case-sensitive)."""
    return fresh_folder(ntfs_mount, request.node.name)


@pytest.fixture
def ntfs_ci_root(ntfs_ci_mount: Path, request: pytest.FixtureRequest) -> Path:
    """A fresh, empty folder where Windows' naming rules apply, case-insensitive (listings
    show names in lower case)."""
    return fresh_folder(ntfs_ci_mount, request.node.name)
