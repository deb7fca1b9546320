#!/usr/bin/env python3
"""Set-up helper: the two commands a fresh clone needs, on Linux, macOS and Windows.

    python dev.py serve [pvarchiver serve options]   start the archiver
    python dev.py test  [pytest options]             run the whole test suite

Both create ``.venv`` next to this file on first use and install the project into it (with
the test extras for ``test``), so the only prerequisite is Python 3.11+.
Only the standard library is used here because nothing else exists yet when it runs.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".pvarchiver-installed"


def venv_python() -> Path:
    if os.name == "nt":
        return VENV / "Scripts" / "python.exe"
    return VENV / "bin" / "python"


def ensure_venv(extras: str) -> Path:
    """Create the venv and (re)install the project when pyproject.toml or extras changed."""
    if sys.version_info < (3, 11):  # noqa: UP036 - runs before anything checks the version
        sys.exit(f"pvarchiver needs Python 3.11 or newer, this is {sys.version.split()[0]}")
    py = venv_python()
    if not py.exists():
        print(f"creating virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    have = STAMP.read_text().split() if STAMP.exists() else []
    # extras installed earlier stay installed (a `test` venv can also `serve --demo`)
    wanted = {extras} - {""}
    installed = set(have[1:]) if have and have[0] == digest else set()
    if not have or have[0] != digest or not wanted <= installed:
        print("installing pvarchiver into the virtual environment", flush=True)
        subprocess.check_call([str(py), "-m", "pip", "install", "-q", "--upgrade", "pip"])
        every = sorted(wanted | installed)
        target = f".[{','.join(every)}]" if every else "."
        subprocess.check_call([str(py), "-m", "pip", "install", "-q", "-e", target], cwd=ROOT)
        STAMP.write_text(" ".join([digest, *every]))
    return py


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("serve", "test"):
        print(__doc__)
        return 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "test":
        py = ensure_venv("test")
        return subprocess.call([str(py), "-m", "pytest", *rest], cwd=ROOT)
    # --demo runs the C softIoc from the epicscorelibs wheel (the `demo` extra)
    py = ensure_venv("demo" if "--demo" in rest else "")
    return run_to_the_end([str(py), "-m", "pvarchiver", "serve", *rest])


def run_to_the_end(cmd: list[str]) -> int:
    """Run the archiver and wait for it, however long its shutdown takes.

    Why not subprocess.call: on Ctrl+C it kills the child 0.25 s later, in the middle of the
    archiver's flush of buffered samples. The terminal (or the Windows console) sends Ctrl+C
    to the child itself, so here it is ignored while the child runs.
    """
    proc = subprocess.Popen(cmd, cwd=ROOT)
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return proc.wait()
    finally:
        signal.signal(signal.SIGINT, old)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
