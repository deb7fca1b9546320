"""Copy a store tree to another file naming (``pvarchiver pb rekey SRC DST``).

A Java AA names a PV's files ``<key><terminator><partition>.pb`` with ``:`` as terminator,
which Windows refuses; a store on Windows uses the portable spelling (see :mod:`.naming`). This
module copies every data file of a tree to the other naming, file by file:

1. each path component is passed through :func:`~.naming.unportable` (portable names become
   AA names; AA names are left as they are);
2. in the last component, the terminator (the character right before the partition name) is
   replaced by the destination's terminator;
3. where the destination needs it, :func:`~.naming.portable` is applied.

What makes it safe to interrupt and re-run: every file is written under a temporary name in
its destination folder, fsynced and renamed into place, so a destination file is either
complete or absent. A destination file that already holds the same bytes counts as *already
there*; one that holds other bytes is a *conflict* and is never overwritten. Every copy is read
back and compared with the bytes read from the source (size and SHA-256), and every ``.pb``
copy must have a readable header naming a PV. The source is only read.

The functions here print nothing: they return a :class:`RekeyReport`, and raise
:class:`RekeyError` (one line for the user) when the copy cannot start at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .naming import WINDOWS_FORBIDDEN, KeyNaming, portable, unportable
from .partitions import Granularity, parse_partition_name
from .paths import long_path
from .pbfile import PBFileError, read_header
from .probe import StoreFolderError, probe_folder
from .store import fsync_dir

#: suffix of the temporary file a copy is written to, in its destination folder
TEMP_SUFFIX = ".rekeytmp"
#: characters whose refusal by the destination folder means AA names cannot be written there
AA_NAME_CHARS = ':"*<>?|'
_PROBE_PREFIX = ".pvarchiver-probe-"
_CHUNK = 1 << 20

Names = Literal["auto", "portable", "aa"]
Status = Literal["copied", "already", "skipped", "conflict", "error"]

# The end of a data file's name: partition name (YYYY[_MM[_DD[_HH[_mm]]]]) and extension.
_PARTITION = re.compile(r"\d{4}(?:_\d{2}){0,4}")
#: extension -> what the file is; ``None``: store data, copied
_KNOWN_EXT: dict[str, str | None] = {
    ".pb": None,
    ".pbappend": "work copy of an interrupted Java AA ETL (the .pb file beside it holds the data)",
    ".pb.renaming": "temporary file of an interrupted PV rename",
    ".pb.repair": "temporary file of an interrupted 'pb repair'",
    ".pb.bak": "original kept by 'pb repair' (copy it by hand if you still need it)",
    ".pb" + TEMP_SUFFIX: "temporary file of an interrupted 'pb rekey'",
}
#: post-processor caches of the AA (``<key><partition>.firstSample_3600``): store data, copied
_CACHE_EXT = re.compile(r"\.[A-Za-z][A-Za-z0-9]*_\d+$")
_EXT = re.compile(
    "(?:" + "|".join(re.escape(e) for e in sorted(_KNOWN_EXT, key=len, reverse=True)) + ")$"
)


class RekeyError(RuntimeError):
    """The copy cannot start (bad arguments, folders); nothing was written."""


@dataclass(frozen=True)
class NameParts:
    """A data file's name split at its terminator: ``stem + terminator + partition + ext``."""

    stem: str
    terminator: str
    partition: str
    ext: str

    def with_terminator(self, terminator: str) -> str:
        return self.stem + terminator + self.partition + self.ext


def _partition_ok(text: str) -> bool:
    n = text.count("_") + 1
    return any(
        g.name_components == n and parse_partition_name(text, g) is not None for g in Granularity
    )


def _split_ext(name: str) -> tuple[str, str] | None:
    m = _EXT.search(name) or _CACHE_EXT.search(name)
    if m is None:
        return None
    return name[: m.start()], m.group(0)


def parse_name(name: str, terminator: str | None = None) -> NameParts | None:
    """Split a file name (AA spelling) at its terminator, or None if it is not data-shaped.

    Without ``terminator`` the character right before the partition name is taken; with it,
    the rightmost occurrence of ``terminator`` followed by a partition name is.
    """
    split = _split_ext(name)
    if split is None:
        return None
    body, ext = split
    for i in range(len(body) - 4, 0, -1):  # i: where the partition name starts
        if terminator is not None and body[i - 1] != terminator:
            continue
        part = body[i:]
        if _PARTITION.fullmatch(part) and _partition_ok(part):
            return NameParts(body[: i - 1], body[i - 1], part, ext)
    return None


def convert_relpath(
    relpath: str, terminator: str, from_terminator: str | None = None, to_portable: bool = False
) -> str | None:
    """A file's ``/``-separated path under the other naming, or None if it is not data."""
    parts = [unportable(p) for p in relpath.split("/")]
    np = parse_name(parts[-1], from_terminator)
    if np is None:
        return None
    parts[-1] = np.with_terminator(terminator)
    out = "/".join(parts)
    return portable(out) if to_portable else out


@dataclass(frozen=True)
class Item:
    """One source file and what became of it."""

    src: str  # path relative to SRC, ``/``-separated, as found
    dst: str | None  # path relative to DST, ``/``-separated (None: not data)
    size: int
    reason: str = ""


@dataclass
class RekeyReport:
    src: Path
    dst: Path
    portable: bool
    terminator: str  # the destination's terminator (AA spelling)
    source_terminator: str | None  # AA spelling; None when no data file was found
    case_insensitive: bool
    dry_run: bool
    copied: list[Item] = field(default_factory=list)  # dry run: would be copied
    already: list[Item] = field(default_factory=list)
    skipped: list[Item] = field(default_factory=list)
    conflicts: list[Item] = field(default_factory=list)
    errors: list[Item] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    temps_removed: int = 0

    @property
    def ok(self) -> bool:
        return not self.conflicts and not self.errors

    @property
    def bytes_copied(self) -> int:
        return sum(i.size for i in self.copied)

    def describe_naming(self) -> str:
        form = "portable (Windows) names" if self.portable else "AA names"
        spelled = (
            portable(self.terminator)
            if self.portable and self.terminator in WINDOWS_FORBIDDEN
            else self.terminator
        )
        how = f"terminator {self.terminator!r}"
        if spelled != self.terminator:
            how += f" written as U+{ord(spelled):04X}"
        case = ", case-insensitive folder" if self.case_insensitive else ""
        return f"{form}, {how}{case}"


@dataclass
class _Planned:
    src: str
    dst: str
    size: int
    is_pb: bool


def _check_terminator(term: str, what: str) -> str:
    term = unportable(term)
    try:
        KeyNaming(terminator=term)
    except ValueError as e:
        raise RekeyError(f"{what}: {e}") from None
    return term


def _inside(a: Path, b: Path) -> bool:
    return a == b or b in a.parents


def _nearest_existing(p: Path) -> Path:
    while not p.exists() and p.parent != p:
        p = p.parent
    return p


def _walk(src: Path, report: RekeyReport) -> list[tuple[str, int]]:
    """Every regular file under ``src`` as (relative path, size), sorted."""
    found: list[tuple[str, int]] = []

    def onerror(e: OSError) -> None:
        rel = _rel(src, Path(e.filename)) if e.filename else "."
        report.errors.append(Item(rel, None, 0, f"cannot list the folder: {e.strerror or e}"))

    for folder, dirs, files in os.walk(src, onerror=onerror):
        base = Path(folder)
        keep = []
        for d in sorted(dirs):
            if d.startswith(_PROBE_PREFIX):
                continue
            if (base / d).is_symlink():
                report.skipped.append(
                    Item(_rel(src, base / d), None, 0, "symbolic link to a folder, not followed")
                )
                continue
            keep.append(d)
        dirs[:] = keep
        for f in sorted(files):
            p = base / f
            try:
                st = p.stat()
            except OSError as e:
                report.errors.append(Item(_rel(src, p), None, 0, f"cannot read: {e.strerror}"))
                continue
            found.append((_rel(src, p), st.st_size))
    found.sort()
    return found


def _rel(root: Path, p: Path) -> str:
    return p.relative_to(root).as_posix()


def _source_terminator(names: list[str], given: str | None, report: RekeyReport) -> str | None:
    if given is not None:
        return given
    seen: Counter[str] = Counter()
    for rel in names:
        np = parse_name(unportable(rel.rsplit("/", 1)[-1]))
        if np is not None and np.ext == ".pb":
            seen[np.terminator] += 1
    if not seen:
        for rel in names:  # no .pb file at all: whatever data-shaped names there are
            np = parse_name(unportable(rel.rsplit("/", 1)[-1]))
            if np is not None:
                seen[np.terminator] += 1
    if not seen:
        return None
    term, _ = max(sorted(seen.items()), key=lambda kv: kv[1])
    if len(seen) > 1:
        counts = ", ".join(f"{t!r}: {n}" for t, n in sorted(seen.items()))
        report.notes.append(
            f"the source's files end in several terminators ({counts}); used {term!r}, the "
            f"most common (give --from-terminator to choose another)"
        )
    return term


def _refused_in(path: str, refused: frozenset[str]) -> str | None:
    """A character of ``path`` the destination folder refuses, if any."""
    bad = next((c for c in path if c in refused and c != "."), None)
    if bad is not None:
        return bad
    if "." in refused:  # trailing dots (and spaces) of folder names are refused or stripped
        for comp in path.split("/")[:-1]:
            if comp.endswith((".", " ")):
                return comp[-1]
    return None


def _same_bytes(a: Path, b: Path) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(_CHUNK), fb.read(_CHUNK)
            if x != y:
                return False
            if not x:
                return True


def _digest(path: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
            n += len(chunk)
    return n, h.hexdigest()


def _header_problem(path: Path) -> str | None:
    """Why ``path`` is not a usable PlainPB file, or None."""
    try:
        with open(path, "rb") as fh:
            info, _ = read_header(fh, path.name)
    except PBFileError as e:
        return str(e)
    if not info.pvname:
        return f"{path.name}: the header names no PV"
    return None


class _Copier:
    def __init__(self, src: Path, dst: Path, check_case: bool):
        self.src = src
        self.dst = dst
        self.check_case = check_case  # a case-insensitive destination that lists names as made
        self._listings: dict[Path, dict[str, str] | None] = {}

    def _listing(self, folder: Path) -> dict[str, str] | None:
        """casefolded name -> name as listed, for a destination folder (None: no folder)."""
        if folder not in self._listings:
            try:
                self._listings[folder] = {n.casefold(): n for n in os.listdir(folder)}
            except OSError:
                self._listings[folder] = None
        return self._listings[folder]

    def spelling_clash(self, rel: str) -> str | None:
        """On a case-insensitive destination: an existing entry on ``rel``'s way that is
        spelled in another case (writing there would mix two spellings)."""
        folder = self.dst
        done: list[str] = []
        for comp in rel.split("/"):
            names = self._listing(folder)
            if names is None:
                return None
            there = names.get(comp.casefold())
            if there is None:
                return None
            if there != comp:
                return "/".join([*done, there])
            done.append(comp)
            folder = folder / comp
        return None

    def copy(self, p: _Planned, dry_run: bool) -> tuple[Status, str]:
        src = self.src / p.src
        dst = self.dst / p.dst
        st0 = src.stat()
        if p.is_pb:
            if st0.st_size == 0:
                return "skipped", "empty (zero-byte) .pb file: no header, no data"
            problem = _header_problem(src)
            if problem is not None:
                return (
                    "error",
                    f"not copied, its header cannot be read ({problem}); see pb validate",
                )
        if self.check_case:
            other = self.spelling_clash(p.dst)
            if other is not None:
                return "conflict", f"the destination already has {other!r}, spelled in another case"
        if os.path.lexists(dst):
            if not dst.is_file():
                return "conflict", "the destination has something else than a file at this name"
            if dst.stat().st_size == st0.st_size and _same_bytes(src, dst):
                return "already", ""
            return "conflict", (
                f"the destination already has a different file here ({dst.stat().st_size} bytes, "
                f"the source has {st0.st_size}); not overwritten"
            )
        if dry_run:
            return "copied", ""
        return self._write(src, dst, st0, p.is_pb)

    def _write(self, src: Path, dst: Path, st0: os.stat_result, is_pb: bool) -> tuple[Status, str]:
        _makedirs(dst.parent)
        tmp = dst.with_name(dst.name + TEMP_SUFFIX)
        h = hashlib.sha256()
        n = 0
        try:
            with open(src, "rb") as fin, open(tmp, "wb") as fout:
                while chunk := fin.read(_CHUNK):
                    h.update(chunk)
                    n += len(chunk)
                    fout.write(chunk)
                fout.flush()
                os.fsync(fout.fileno())
            os.utime(tmp, ns=(st0.st_atime_ns, st0.st_mtime_ns))  # by path: Windows too
            st1 = src.stat()
            if (st1.st_size, st1.st_mtime_ns) != (st0.st_size, st0.st_mtime_ns) or n != st0.st_size:
                tmp.unlink()
                return "error", (
                    "the source file changed while it was copied (is an archiver still writing "
                    "it? stop it and run again)"
                )
            if os.path.lexists(dst):  # appeared meanwhile: never replace another file
                tmp.unlink()
                return "conflict", "a file appeared at the destination during the copy"
            os.replace(tmp, dst)
            fsync_dir(dst.parent)
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink()
            return "error", f"cannot write the copy: {e.strerror or e}"
        # verify what is now on the disk, not what was written
        try:
            size, digest = _digest(dst)
        except OSError as e:
            return "error", f"cannot read the copy back: {e.strerror or e}"
        if (size, digest) != (n, h.hexdigest()):
            with contextlib.suppress(OSError):
                dst.unlink()
            return "error", "the copy read back differs from the source; removed, run again"
        if is_pb:
            problem = _header_problem(dst)
            if problem is not None:
                return "error", f"the copy is not a valid PB file: {problem}"
        return "copied", ""


def _makedirs(folder: Path) -> None:
    missing = []
    p = folder
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            d.mkdir()
        fsync_dir(d.parent)


def _case_preserving(folder: Path) -> bool:
    """Whether ``folder`` lists names in the case they were created in (NTFS, APFS and vfat
    do; lowntfs-3g with ``ignore_case`` lists them in lower case)."""
    name = f".pvarchiver-rekey-Case-{uuid.uuid4().hex[:8]}"
    try:
        (folder / name).touch()
    except OSError:
        return True
    try:
        return name in os.listdir(folder)
    finally:
        with contextlib.suppress(OSError):
            (folder / name).unlink()


def _remove_temps(dst: Path, dry_run: bool) -> int:
    n = 0
    for folder, _, files in os.walk(dst):
        for f in files:
            if f.endswith(TEMP_SUFFIX):
                n += 1
                if not dry_run:
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(folder, f))
    return n


def rekey(
    src: Path,
    dst: Path,
    *,
    terminator: str = ":",
    from_terminator: str | None = None,
    names: Names = "auto",
    dry_run: bool = False,
    on_progress: Callable[[int, int, int], None] | None = None,
) -> RekeyReport:
    """Copy the store tree ``src`` to ``dst`` under the destination's naming.

    ``names``: ``"portable"`` or ``"aa"`` force a spelling; ``"auto"`` writes portable names
    on Windows and where a probe of ``dst`` finds it refuses ``:"*<>?|``. ``on_progress(done,
    total, nbytes)`` is called after each data file (for progress displays).
    """
    terminator = _check_terminator(terminator, "--terminator")
    given = (
        None if from_terminator is None else _check_terminator(from_terminator, "--from-terminator")
    )
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise RekeyError(f"{src} is not a folder")
    rs, rd = src.resolve(), dst.resolve()
    if _inside(rs, rd) or _inside(rd, rs):
        raise RekeyError(f"{src} and {dst} overlap; the destination must be a separate folder")
    if dst.exists() and not dst.is_dir():
        raise RekeyError(f"{dst} exists and is not a folder")
    shown = (src, dst)  # as the user gave them, for the report
    src, dst = long_path(src), long_path(dst)

    try:
        probe = probe_folder(_nearest_existing(dst) if dry_run else dst)
    except StoreFolderError as e:
        raise RekeyError(str(e)) from None
    refused_aa = sorted(probe.refused & set(AA_NAME_CHARS))
    if names == "portable":
        to_portable = True
    elif names == "aa":
        to_portable = False
    else:
        to_portable = os.name == "nt" or bool(refused_aa)

    report = RekeyReport(*shown, to_portable, terminator, None, probe.case_insensitive, dry_run)
    files = _walk(src, report)
    report.source_terminator = _source_terminator([r for r, _ in files], given, report)

    planned: list[_Planned] = []
    for rel, size in files:
        leaf = unportable(rel.rsplit("/", 1)[-1])
        split = _split_ext(leaf)
        if split is None:
            report.skipped.append(
                Item(rel, None, size, "not a store data file (no partition name and .pb)")
            )
            continue
        why = _KNOWN_EXT.get(split[1])
        if why is not None:
            report.skipped.append(Item(rel, None, size, why))
            continue
        term = report.source_terminator
        out = convert_relpath(rel, terminator, term, to_portable) if term is not None else None
        if out is None:
            np = parse_name(leaf)
            reason = (
                f"its terminator is {np.terminator!r}, not {term!r} as in the rest of the tree"
                " (give --from-terminator to choose)"
                if np is not None
                else "not a store data file (nothing partition-shaped before the extension)"
            )
            report.skipped.append(Item(rel, None, size, reason))
            continue
        planned.append(_Planned(rel, out, size, split[1] == ".pb"))

    for p in planned:
        bad = _refused_in(p.dst, probe.refused)
        if bad is None:
            continue
        fix = (
            "drop --aa-names to write portable names"
            if names == "aa"
            else "choose another --terminator"
            if bad == terminator
            else "this destination cannot hold these names"
        )
        raise RekeyError(
            f"the destination folder {dst} refuses {bad!r} in file names (needed for "
            f"{p.dst!r}); {fix}; nothing was copied"
        )

    planned = _drop_collisions(planned, probe.case_insensitive, report)
    if dst.exists():
        report.temps_removed = _remove_temps(dst, dry_run)

    check_case = probe.case_insensitive
    if check_case and not _case_preserving(probe.folder):
        check_case = False
        report.notes.append(
            "the destination lists names in another case than they were written in; names "
            "copied back from it will not have their original case"
        )
    copier = _Copier(src, dst, check_case)
    nbytes = 0
    for done, p in enumerate(planned, start=1):
        try:
            status, reason = copier.copy(p, dry_run)
        except OSError as e:
            status, reason = "error", f"{e.strerror or e}"
        item = Item(p.src, p.dst, p.size, reason)
        {
            "copied": report.copied,
            "already": report.already,
            "skipped": report.skipped,
            "conflict": report.conflicts,
            "error": report.errors,
        }[status].append(item)
        nbytes += p.size
        if on_progress is not None:
            on_progress(done, len(planned), nbytes)
    return report


def _drop_collisions(
    planned: list[_Planned], case_insensitive: bool, report: RekeyReport
) -> list[_Planned]:
    """Source files that would land on one destination name (or, on a case-insensitive
    destination, on names or folders differing only in case) are conflicts, all of them."""

    def fold(s: str) -> str:
        return s.casefold() if case_insensitive else s

    spellings: dict[str, set[str]] = defaultdict(set)
    targets: dict[str, list[_Planned]] = defaultdict(list)
    for p in planned:
        comps = p.dst.split("/")
        for i in range(1, len(comps)):
            prefix = "/".join(comps[:i])
            spellings[fold(prefix)].add(prefix)
        targets[fold(p.dst)].append(p)
    keep = []
    for p in planned:
        same = [q for q in targets[fold(p.dst)] if q is not p]
        comps = p.dst.split("/")
        clash = next(
            (
                sorted(spellings[fold(pre)] - {pre})[0]
                for pre in ("/".join(comps[:i]) for i in range(1, len(comps)))
                if len(spellings[fold(pre)]) > 1
            ),
            None,
        )
        if same:
            how = (
                "the same name"
                if all(q.dst == p.dst for q in same)
                else "a name differing only in case (the destination does not tell them apart)"
            )
            others = ", ".join(repr(q.src) for q in same)
            report.conflicts.append(
                Item(p.src, p.dst, p.size, f"it and {others} would be copied to {how}")
            )
        elif clash is not None:
            report.conflicts.append(
                Item(
                    p.src,
                    p.dst,
                    p.size,
                    f"its folder and the folder {clash!r} differ only in case, and the "
                    "destination does not tell them apart",
                )
            )
        else:
            keep.append(p)
    return keep
