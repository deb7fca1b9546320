"""Filesystems with Windows' file-naming rules, mounted on Linux for the tests (issue 13).

``mount_ntfs`` formats a sparse image file as NTFS and mounts it through FUSE:

- ``ntfs-3g -o windows_names``: names Windows refuses (``:"*<>?|``, control characters, a
  trailing dot or space, device names such as ``CON``, ``COM1``, ``lpt9``, ``con.txt``) fail
  with ``EINVAL``; names stay case-sensitive.
- ``lowntfs-3g -o windows_names,ignore_case``: the same rules, and names that differ only in
  case are the same file, as on Windows and the macOS default. Listings show every name in
  lower case.

Mounting needs Linux, root, ``/dev/fuse`` and the ``ntfs-3g`` package; when one is missing
``MountUnavailable`` says which. The mount is checked before it is handed out (a ``:`` must
be refused, case must (not) matter), so a test never silently runs on a filesystem that does
not enforce the rules. ``SessionMounts`` is what ``conftest.py`` uses: at most one mount per
variant per pytest session, all unmounted and deleted at the end.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# --storage-fs value -> ignore_case
VARIANTS = {"ntfs": False, "ntfs-ci": True}

IMAGE_SIZE = 1024 * 1024 * 1024  # sparse: only what NTFS writes takes disk space
_TIMEOUT = 60.0
_SBIN = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")  # mkntfs is in sbin, not in a user's PATH


class MountUnavailable(Exception):
    """This machine cannot mount the filesystem; ``reason`` says precisely why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for d in _SBIN:
        p = Path(d) / name
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return None


def _run(argv: list[str], what: str) -> None:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        raise MountUnavailable(
            f"{what}: `{' '.join(argv)}` did not finish in {_TIMEOUT:g} s"
        ) from e
    except OSError as e:
        raise MountUnavailable(f"{what}: cannot run `{argv[0]}`: {e}") from e
    if r.returncode != 0:
        # the last lines say what went wrong (mkntfs warns about an image file first)
        lines = (r.stderr.strip() or r.stdout.strip() or "no output").splitlines()
        out = " | ".join(lines[-3:])
        raise MountUnavailable(
            f"{what} failed: `{' '.join(argv)}` exited with {r.returncode}: {out}"
        )


def _requirements(ignore_case: bool) -> tuple[str, str]:
    """The mkntfs and mount programs to use, or MountUnavailable naming what is missing."""
    if not sys.platform.startswith("linux"):
        raise MountUnavailable(
            f"mounting an NTFS image needs Linux with FUSE and ntfs-3g (this is {sys.platform})"
        )
    if os.geteuid() != 0:
        raise MountUnavailable(f"mounting an NTFS image needs root (running as uid {os.geteuid()})")
    if not Path("/dev/fuse").exists():
        raise MountUnavailable(
            "/dev/fuse is missing (no FUSE here; a container needs --device /dev/fuse "
            "and --cap-add SYS_ADMIN)"
        )
    mkntfs = _tool("mkntfs")
    mounter_name = "lowntfs-3g" if ignore_case else "ntfs-3g"
    mounter = _tool(mounter_name)
    missing = [n for n, p in (("mkntfs", mkntfs), (mounter_name, mounter)) if p is None]
    if missing:
        raise MountUnavailable(f"{' and '.join(missing)} not installed (apt-get install ntfs-3g)")
    assert mkntfs is not None and mounter is not None
    return mkntfs, mounter


def _check_rules(mnt: Path, ignore_case: bool) -> None:
    """Refuse a mount that does not enforce what the tests rely on."""
    colon = mnt / "probe:colon"
    try:
        colon.touch()
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise MountUnavailable(f"{mnt}: creating {colon.name!r} gave {e}, not EINVAL") from e
    else:
        colon.unlink()
        raise MountUnavailable(f"{mnt} accepted {colon.name!r}: windows_names is not in effect")
    upper = mnt / "CaseProbe"
    upper.touch()
    try:
        folded = (mnt / "caseprobe").exists()
    finally:
        upper.unlink()
    if folded != ignore_case:
        want = "case-insensitive" if ignore_case else "case-sensitive"
        raise MountUnavailable(f"{mnt} is not {want}")


def mount_ntfs(workdir: Path | str, *, ignore_case: bool = False, size: int = IMAGE_SIZE) -> Path:
    """Format ``workdir/ntfs.img`` as NTFS, mount it on ``workdir/mnt`` and return that.

    ``ignore_case`` mounts with lowntfs-3g and ``ignore_case`` (case-insensitive), otherwise
    with ntfs-3g; both with ``windows_names``. Raises MountUnavailable with the reason when
    this machine cannot. Undo with ``unmount``.
    """
    mkntfs, mounter = _requirements(ignore_case)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    image, mnt = workdir / "ntfs.img", workdir / "mnt"
    if os.path.ismount(mnt):
        raise MountUnavailable(f"{mnt} is already a mount point")
    with open(image, "wb") as f:
        f.truncate(size)
    _run([mkntfs, "-F", "-Q", "-q", str(image)], "mkntfs")
    mnt.mkdir(exist_ok=True)
    opts = "windows_names,ignore_case" if ignore_case else "windows_names"
    _run([mounter, "-o", opts, str(image), str(mnt)], "mount")
    if not os.path.ismount(mnt):
        raise MountUnavailable(f"`{mounter} -o {opts}` exited 0 but {mnt} is not mounted")
    try:
        _check_rules(mnt, ignore_case)
    except BaseException:
        unmount(mnt)
        raise
    return mnt


def unmount(path: Path | str) -> None:
    """Unmount ``path`` (a no-op when it is not a mount point).

    A file still open there (a server a test left running) makes the unmount busy: it is
    retried for a few seconds, then done lazily (detached now, released when closed).
    """
    path = Path(path)
    if not os.path.ismount(path):
        return
    fusermount = _tool("fusermount") or _tool("fusermount3")
    umount = _tool("umount")
    plain = [c for c in ([fusermount, "-u"], [umount]) if c[0]]
    lazy = [c for c in ([fusermount, "-u", "-z"], [umount, "-l"]) if c[0]]
    errors: list[str] = []
    for cmds in (plain,) * 10 + (lazy,):
        for cmd in cmds:
            r = subprocess.run([*cmd, str(path)], capture_output=True, text=True, timeout=_TIMEOUT)
            if not os.path.ismount(path):
                return
            errors.append(r.stderr.strip())
        time.sleep(0.3)
    raise OSError(f"cannot unmount {path}: {errors[-1] if errors else 'no fusermount/umount'}")


class SessionMounts:
    """At most one mount per variant (``VARIANTS``), made on first use and kept until
    ``close``. A failure is remembered too, so it is tried once, not once per test."""

    def __init__(self) -> None:
        self._mounts: dict[str, Path] = {}
        self._failed: dict[str, MountUnavailable] = {}

    def get(self, variant: str) -> Path:
        if variant in self._failed:
            raise self._failed[variant]
        if variant not in self._mounts:
            workdir = Path(tempfile.mkdtemp(prefix=f"pvarchiver-{variant}-"))
            try:
                self._mounts[variant] = mount_ntfs(workdir, ignore_case=VARIANTS[variant])
            except MountUnavailable as e:
                shutil.rmtree(workdir, ignore_errors=True)
                self._failed[variant] = e
                raise
        return self._mounts[variant]

    def close(self) -> None:
        errors = []
        for mnt in self._mounts.values():
            try:
                unmount(mnt)
            except OSError as e:
                errors.append(str(e))
                continue
            shutil.rmtree(mnt.parent, ignore_errors=True)
        self._mounts.clear()
        if errors:
            raise OSError("; ".join(errors))


def fresh_folder(mnt: Path, name: str) -> Path:
    """A new, empty folder on ``mnt`` named after ``name`` (a test's name)."""
    base = mnt / "roots"
    base.mkdir(exist_ok=True)
    prefix = "".join(c if c.isalnum() or c == "_" else "_" for c in name)[:30]
    return Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=base))
