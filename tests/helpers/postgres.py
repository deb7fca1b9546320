"""A private PostgreSQL server for tests: the distribution's ``initdb`` and ``pg_ctl`` run as an
unprivileged user in a temporary folder, listening on 127.0.0.1 on a free port.

PostgreSQL refuses to run as root, so as root the commands run as the ``postgres`` user the
package created (``runuser -u postgres``), in a folder that user owns; as anyone else they run
as that user. Nothing of the machine's own PostgreSQL (its cluster, port 5432, its config) is
used or touched. Tests get a fresh database each (:meth:`PostgresServer.new_database`), so one
server per session serves them all; a test that stops the server starts its own.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .net import free_port

USER = "archiver"


def find_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` that has ``initdb`` and ``pg_ctl``."""
    found = []
    for d in glob.glob("/usr/lib/postgresql/*/bin"):
        p = Path(d)
        if (p / "initdb").exists() and (p / "pg_ctl").exists():
            try:
                found.append((int(p.parent.name.split(".")[0]), p))
            except ValueError:
                continue
    return max(found)[1] if found else None


def missing_reason() -> str | None:
    """Why no private server can run here (None: it can)."""
    if find_bin() is None:
        return "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin (apt install postgresql)"
    if os.geteuid() == 0 and (shutil.which("runuser") is None or _uid("postgres") is None):
        return "running as root, but no 'postgres' user or runuser to run PostgreSQL unprivileged"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg 3 is not installed (pip install 'pvarchiver[postgres]')"
    return None


def _uid(name: str) -> int | None:
    import pwd

    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


class PostgresServer:
    """One private server (see the module docstring)."""

    def __init__(self) -> None:
        bin_dir = find_bin()
        assert bin_dir is not None
        self.bin = bin_dir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pvarchiver-pg-"))
        self.data = self.dir / "data"
        if os.geteuid() == 0:
            uid = _uid("postgres")
            assert uid is not None
            os.chown(self.dir, uid, -1)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", USER, "-E", "UTF8")
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/postgres"

    def url_of(self, database: str) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bin / tool), *args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=self.dir)
        if res.returncode != 0:
            log = self.dir / "log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{tool} failed: {res.stdout}{res.stderr}{tail}")

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.dir / "log"), "-w", "start"
        )

    def stop(self) -> None:
        """Stop at once (``immediate``: clients see their connections drop, as in a crash)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def new_database(self) -> str:
        """The URL of a new empty database."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url_of(name)

    def close(self) -> None:
        try:
            self.stop()
        except RuntimeError:
            pass  # already stopped
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        yield server
    finally:
        server.close()
