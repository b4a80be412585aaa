"""A throwaway PostgreSQL server for the tests, from Debian's ``postgresql`` package.

``initdb`` + ``pg_ctl`` in a temporary folder, listening only on a Unix socket in that folder
(no TCP port is opened), trust authentication for the one user ``vitrine``, durability switched
off (fsync) because the data is thrown away. As root, the server runs as the ``postgres`` user
(PostgreSQL refuses to run as root) through ``runuser``, and that user is given the folder.

The fixtures in ``conftest.py`` start one per test session and stop it at the end.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from pathlib import Path

REQUIRE_ENV = "VITRINE_REQUIRE_POSTGRES"  # set (CI does): missing binaries fail the tests instead of skipping
BIN_ENV = "VITRINE_PG_BIN"  # a folder holding initdb and pg_ctl, to use another PostgreSQL
USER = "vitrine"


def find_bin_dir() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``: $VITRINE_PG_BIN, the newest Debian
    /usr/lib/postgresql/<version>/bin, or the PATH."""
    given = os.environ.get(BIN_ENV, "").strip()
    if given:
        return Path(given) if (Path(given) / "initdb").exists() else None

    def version(path: str) -> int:
        found = re.search(r"/postgresql/(\d+)", path)
        return int(found.group(1)) if found else 0

    for initdb in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version, reverse=True):
        if os.access(initdb, os.X_OK) and os.access(Path(initdb).parent / "pg_ctl", os.X_OK):
            return Path(initdb).parent
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).parent
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One PostgreSQL cluster in a temporary folder. ``start()``, ``create_database()``, ``stop()``."""

    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir
        # not under pytest's tmp_path: its parents are closed to other users, and the server may run as postgres
        self.base = Path(tempfile.mkdtemp(prefix="vitrine-pg-"))
        self.data = self.base / "data"
        self.sock = self.base / "sock"
        self.logfile = self.base / "server.log"
        self.port = _free_port()
        self.as_root = hasattr(os, "geteuid") and os.geteuid() == 0
        self._lock = threading.Lock()
        self.started = False

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = ["runuser", "-u", "postgres", "--", *args] if self.as_root else list(args)
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.base)
        if result.returncode != 0:
            log = self.logfile.read_text(errors="replace")[-2000:] if self.logfile.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed ({result.returncode}):\n{result.stderr[-2000:]}\n{log}")
        return result

    def start(self) -> PostgresServer:
        self.sock.mkdir()
        if self.as_root:
            shutil.chown(self.base, "postgres", "postgres")
            shutil.chown(self.sock, "postgres", "postgres")
        initdb = [str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", USER, "--auth=trust", "--no-sync"]
        self._run(*initdb, "-E", "UTF8", "--locale=C")
        options = (
            f"-k {self.sock} -p {self.port} -c listen_addresses='' -c max_connections=400 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=32MB"
        )
        pg_ctl = [str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l", str(self.logfile)]
        self._run(*pg_ctl, "-w", "-t", "60", "-o", options, "start")
        self.started = True
        return self

    def url(self, database: str = "postgres", driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://{USER}@/{database}?host={self.sock}&port={self.port}"

    def create_database(self, name: str | None = None) -> str:
        """A new, empty database; its SQLAlchemy URL."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:16]}"
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
            raise ValueError(f"bad database name {name!r}")
        admin = {"host": str(self.sock), "port": self.port, "user": USER, "dbname": "postgres", "autocommit": True}
        with self._lock, psycopg.connect(**admin) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)

    def stop(self) -> None:
        try:
            if self.started:
                self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            self.started = False
            shutil.rmtree(self.base, ignore_errors=True)
