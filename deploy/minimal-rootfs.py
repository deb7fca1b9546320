"""Assemble the container's root file system from only what runs (used by the Containerfile).

    VENV/bin/python deploy/minimal-rootfs.py VENV DEST

Run inside the build stage with the finished virtual environment's interpreter. Copies into
DEST, at the same paths as in the build stage, so nothing needs relocating:

* the base interpreter (the venv's ``bin/python3`` symlink chain) and its standard library,
  found with ``sysconfig`` (``/usr/local/lib/python3.X`` in the official images,
  ``/usr/lib/python3.X`` in Debian's), without what never runs in the container (below);
* the virtual environment, with numpy's build-time parts removed;
* a POSIX shell and the few programs ``entrypoint.sh`` calls (``TOOLS``);
* every shared library all of that needs: the dynamic loader's own ``--list`` (what ``ldd``
  runs) over every ELF file copied, plus the libraries glibc loads by name at run time;
* ``/etc`` files: passwd/group with the ``pvarchiver`` user (uid/gid 10001), nsswitch.conf,
  the loader's cache; ``/tmp`` (1777) and ``/storage/{sts,mts,lts}`` owned by 10001.

Symlinks are reproduced as symlinks (Debian's merged /usr: ``/bin -> usr/bin``, ``/lib64``,
``python3 -> python3.11``, ``sitecustomize.py -> /etc/python3.11/...``), each target copied
too. Any library the loader cannot find is an error: the build fails here, not at run time
(and the Containerfile then runs the archiver chrooted into DEST before it is used).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import sysconfig
from pathlib import Path

UID = GID = 10001
# what the entrypoint calls (POSIX sh; getent/awk/cut for the host address; id, mkdir for the
# storage check), plus ls/cat/env/rm for looking around with `docker run IMAGE sh`
TOOLS = ["sh", "getent", "awk", "cut", "id", "mkdir", "ls", "cat", "env", "rm"]
# standard-library parts that never run in the container: installers, GUI, 2to3, docs data,
# the test suites (top level and inside packages), the build-time config folder
STDLIB_SKIP_DIRS = {
    "ensurepip",
    "idlelib",
    "tkinter",
    "turtledemo",
    "lib2to3",
    "pydoc_data",
    "distutils",
    "test",
    "tests",
    "idle_test",
    "site-packages",
    "dist-packages",
}
STDLIB_SKIP_PREFIXES = ("config-",)
# extension modules that are only CPython's own tests (and Tk, which needs X11 libraries)
# and the ones for things the archiver never uses that pull in libraries of their own: NIS
# (libtirpc, Kerberos), Berkeley DB (libdb), OSS audio
DYNLOAD_SKIP_PREFIXES = (
    "_test",
    "_ctypes_test",
    "_xxtestfuzz",
    "xxlimited",
    "_tkinter",
    "xxsubtype",
    "nis.",
    "_dbm.",
    "ossaudiodev.",
)
# numpy's build-time parts: C headers, static math library, Fortran wrapper generator,
# numpy.distutils, type stubs, PyInstaller hooks and the test suites
NUMPY_SKIP = (
    "numpy/_core/include",
    "numpy/_core/lib",
    "numpy/f2py",
    "numpy/distutils",
    "numpy/_pyinstaller",
)
# byte code for `python -O`/`-OO` only (some builds ship it for the whole standard library)
OPTIMIZED_PYC = (".opt-1.pyc", ".opt-2.pyc")
VENV_SKIP_SCRIPTS = {
    "f2py",
    "numpy-config",
    "Activate.ps1",
    "activate",
    "activate.csh",
    "activate.fish",
}
# libraries glibc dlopens by name (so no ELF file lists them): libgcc_s for thread
# cancellation/pthread_exit unwinding; the NSS modules (built into libc since glibc 2.34)
DLOPENED = ("libgcc_s.so.1", "libnss_files.so.2", "libnss_dns.so.2", "libresolv.so.2")


class Rootfs:
    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.done: set[str] = set()

    def put(self, path: str) -> None:
        """Copy ``path`` to the same place under dest, reproducing every symlink on the way."""
        path = os.path.normpath(path)
        if path in self.done:
            return
        self.done.add(path)
        parts = path.split("/")[1:]
        cur = ""
        for i, part in enumerate(parts):
            cur += "/" + part
            if os.path.islink(cur):
                link = os.readlink(cur)
                dst = self.dest / cur.lstrip("/")
                if not os.path.lexists(dst):
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    os.symlink(link, dst)
                target = os.path.join(os.path.dirname(cur), link)
                self.put(os.path.join(target, *parts[i + 1 :]))
                return
        dst = self.dest / path.lstrip("/")
        if os.path.isdir(path):
            dst.mkdir(parents=True, exist_ok=True)
            shutil.copystat(path, dst)
        elif os.path.exists(path):
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dst)
        else:
            raise FileNotFoundError(path)

    def tree(self, top: str, skip_dir=lambda rel: False, skip_file=lambda rel: False) -> None:
        """Copy the folder ``top`` (symlinks as symlinks), leaving out skipped parts."""
        self.put(top)
        for root, dirs, files in os.walk(top):
            rel = os.path.relpath(root, top)
            keep = []
            for d in dirs:
                r = os.path.normpath(os.path.join(rel, d))
                if skip_dir(r):
                    continue
                if os.path.islink(os.path.join(root, d)):
                    self.put(os.path.join(root, d))
                else:
                    keep.append(d)
            dirs[:] = keep
            for d in keep:
                self.put(os.path.join(root, d))
            for f in files:
                if not skip_file(os.path.normpath(os.path.join(rel, f))):
                    self.put(os.path.join(root, f))


def interpreter_of(executable: str) -> str:
    """The ELF program interpreter (the dynamic loader) named in ``executable``'s header."""
    with open(os.path.realpath(executable), "rb") as f:
        data = f.read(1 << 16)
    if data[:4] != b"\x7fELF":
        raise SystemExit(f"{executable}: not an ELF file")
    is64, little = data[4] == 2, data[5] == 1
    e = "<" if little else ">"
    if is64:
        (phoff,) = struct.unpack_from(e + "Q", data, 0x20)
        phentsize, phnum = struct.unpack_from(e + "HH", data, 0x36)
    else:
        (phoff,) = struct.unpack_from(e + "I", data, 0x1C)
        phentsize, phnum = struct.unpack_from(e + "HH", data, 0x2A)
    for i in range(phnum):
        off = phoff + i * phentsize
        (p_type,) = struct.unpack_from(e + "I", data, off)
        if p_type == 3:  # PT_INTERP
            if is64:
                (p_offset,) = struct.unpack_from(e + "Q", data, off + 8)
                (p_filesz,) = struct.unpack_from(e + "Q", data, off + 32)
            else:
                (p_offset,) = struct.unpack_from(e + "I", data, off + 4)
                (p_filesz,) = struct.unpack_from(e + "I", data, off + 16)
            with open(os.path.realpath(executable), "rb") as f:
                f.seek(p_offset)
                return f.read(p_filesz).rstrip(b"\0").decode()
    raise SystemExit(f"{executable}: no program interpreter (statically linked?)")


def needed_libraries(loader: str, elf: str) -> list[str]:
    """Every library ``elf`` loads, transitively, as the loader resolves them (``ldd``)."""
    res = subprocess.run([loader, "--list", elf], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        if "not a dynamic executable" in res.stderr + res.stdout or "statically" in res.stdout:
            return []
        raise SystemExit(f"{loader} --list {elf} failed: {res.stderr or res.stdout}")
    libs = []
    for line in res.stdout.splitlines():
        line = line.strip()
        if "=> not found" in line:
            raise SystemExit(f"{elf}: needs {line.split()[0]}, which is not installed")
        if "=>" in line:
            path = line.split("=>", 1)[1].strip().rsplit(" (", 1)[0].strip()
        else:
            path = line.rsplit(" (", 1)[0].strip()
        if path.startswith("/"):
            libs.append(path)
    return libs


def is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def main() -> int:
    venv, dest = Path(sys.argv[1]), Path(sys.argv[2])
    if sys.prefix == sys.base_prefix:
        raise SystemExit("run this with the virtual environment's interpreter")
    fs = Rootfs(dest)

    # the interpreter: the venv's symlink chain to the base python, and the base's own name
    for name in ("python", "python3", f"python3.{sys.version_info[1]}"):
        if os.path.lexists(venv / "bin" / name):
            fs.put(str(venv / "bin" / name))
    base_exe = getattr(sys, "_base_executable", sys.executable)
    fs.put(base_exe)

    # the standard library, wherever this base keeps it
    stdlib = sysconfig.get_paths()["stdlib"]
    platstdlib = sysconfig.get_paths()["platstdlib"]
    dynload = sysconfig.get_config_var("DESTSHARED") or os.path.join(platstdlib, "lib-dynload")

    def skip_std_dir(rel: str) -> bool:
        name = os.path.basename(rel)
        return name in STDLIB_SKIP_DIRS or (
            "/" not in rel and name.startswith(STDLIB_SKIP_PREFIXES)
        )

    def skip_dynload(rel: str) -> bool:
        return os.path.basename(rel).startswith(DYNLOAD_SKIP_PREFIXES)

    for top in dict.fromkeys((stdlib, platstdlib)):
        fs.tree(
            top,
            skip_dir=skip_std_dir,
            skip_file=lambda rel, top=top: (
                rel.endswith(OPTIMIZED_PYC)
                or (os.path.join(top, rel).startswith(dynload + "/") and skip_dynload(rel))
            ),
        )
    if os.path.isdir(dynload):
        fs.tree(dynload, skip_file=skip_dynload)

    # the virtual environment
    def skip_venv_dir(rel: str) -> bool:
        return any(rel.endswith("site-packages/" + s) for s in NUMPY_SKIP) or (
            os.path.basename(rel) == "tests" and "/numpy/" in rel
        )

    def skip_venv_file(rel: str) -> bool:
        if rel.startswith("bin/") and os.path.basename(rel) in VENV_SKIP_SCRIPTS:
            return True
        return (rel.endswith(".pyi") and "/numpy/" in rel) or rel.endswith(OPTIMIZED_PYC)

    fs.tree(str(venv), skip_dir=skip_venv_dir, skip_file=skip_venv_file)

    # the shell and the entrypoint's tools
    path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    for tool in TOOLS:
        found = shutil.which(tool, path=path)
        if found is None:
            raise SystemExit(f"{tool}: not in the base image")
        fs.put(found)
    fs.put("/bin/sh")  # where scripts and `docker run IMAGE sh -c` expect it

    # the shared libraries of everything copied, and the loader itself
    loader = interpreter_of(base_exe)
    fs.put(loader)
    elves = [p for p in dest.rglob("*") if p.is_file() and not p.is_symlink() and is_elf(p)]
    libdirs: list[str] = []
    for p in elves:
        for lib in needed_libraries(loader, "/" + str(p.relative_to(dest))):
            fs.put(lib)
            if os.path.basename(lib).startswith("libc.so"):
                libdirs.append(os.path.dirname(lib))
    for d in dict.fromkeys(libdirs):
        for name in DLOPENED:
            if os.path.exists(os.path.join(d, name)):
                fs.put(os.path.join(d, name))
    for p in (
        "/etc/ld.so.cache",
        "/etc/ld.so.conf",
        "/etc/ld.so.conf.d",
        "/etc/nsswitch.conf",
        "/etc/host.conf",
        "/etc/os-release",
    ):
        if os.path.lexists(p):
            if os.path.isdir(p):
                fs.tree(p)
            else:
                fs.put(p)

    # users, writable folders
    etc = dest / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        f"pvarchiver:x:{UID}:{GID}::/storage:/usr/sbin/nologin\n"
    )
    (etc / "group").write_text(f"root:x:0:\nnogroup:x:65534:\npvarchiver:x:{GID}:\n")
    if not (etc / "nsswitch.conf").exists():
        (etc / "nsswitch.conf").write_text("passwd: files\ngroup: files\nhosts: files dns\n")
    tmp = dest / "tmp"
    tmp.mkdir(exist_ok=True)
    tmp.chmod(0o1777)
    for d in ("storage", "storage/sts", "storage/mts", "storage/lts"):
        (dest / d).mkdir(exist_ok=True)
        os.chown(dest / d, UID, GID)
    return 0


if __name__ == "__main__":
    sys.exit(main())
