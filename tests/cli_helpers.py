"""Test helper: run the ``vitrine`` command line in subprocesses and watch an indexing run.

Import it from a test file in ``tests/`` after putting this folder on ``sys.path``::

    sys.path.insert(0, str(Path(__file__).parent))
    import cli_helpers as cli

Every run gets the environment of the tests (offline, see conftest.py) minus
``VITRINE_PROGRESS`` and ``VITRINE_DATA_DIR``, so the generated state of a project is always in
``<project>/.vitrine`` and no progress bar is drawn. Output is decoded as UTF-8.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

OFFLINE = "offline-concepts"


def vitrine_command() -> list[str]:
    """The console script installed next to the running Python, else ``python -m vitrine.cli``."""
    script = Path(sys.executable).with_name("vitrine")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "vitrine.cli"]


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("VITRINE_PROGRESS", "VITRINE_DATA_DIR"):
        env.pop(name, None)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", VITRINE_OFFLINE="1")
    env.update(extra)
    return env


def start(*args, **popen_kw) -> subprocess.Popen:
    """Start ``vitrine ARGS...`` with stdout and stderr captured (text, UTF-8)."""
    popen_kw.setdefault("env", cli_env())
    return subprocess.Popen(
        [*vitrine_command(), *(str(a) for a in args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        **popen_kw,
    )


def finish(proc: subprocess.Popen, timeout: float = 300) -> subprocess.CompletedProcess:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"{proc.args} did not finish in {timeout} s\nstdout:\n{out}\nstderr:\n{err}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run(*args, timeout: float = 300, **popen_kw) -> subprocess.CompletedProcess:
    """Run ``vitrine ARGS...`` to completion."""
    return finish(start(*args, **popen_kw), timeout=timeout)


def run_many(*commands: tuple, timeout: float = 300) -> list[subprocess.CompletedProcess]:
    """Run several ``vitrine`` commands at the same time (each a tuple of arguments)."""
    procs = [start(*cmd) for cmd in commands]
    return [finish(p, timeout=timeout) for p in procs]


def flat(text: str) -> str:
    """``text`` with every run of whitespace (line breaks included) turned into one space."""
    return " ".join(text.split())


def describe(result: subprocess.CompletedProcess) -> str:
    return f"{result.args} -> {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def committed_vectors(catalog_db: Path) -> int | None:
    """How many contents have vectors in the catalog (read-only), or None if it cannot be read yet."""
    if not Path(catalog_db).is_file():
        return None
    try:
        con = sqlite3.connect(Path(catalog_db).resolve().as_uri() + "?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return None
    try:
        return con.execute("SELECT COUNT(DISTINCT content_id) FROM embeddings").fetchone()[0]
    except sqlite3.Error:  # the table is not created yet
        return None
    finally:
        con.close()


def wait_for_vectors(proc: subprocess.Popen, catalog_db: Path, at_least: int, timeout: float = 300) -> int:
    """Poll the catalog until ``at_least`` contents have vectors; fail if ``proc`` ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = committed_vectors(catalog_db)
        if n is not None and n >= at_least:
            return n
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(
                f"{proc.args} ended (exit {proc.returncode}) with {n} vectors committed, before {at_least}"
                f"\nstdout:\n{out}\nstderr:\n{err}"
            )
        time.sleep(0.01)
    proc.kill()
    out, err = proc.communicate()
    raise AssertionError(f"fewer than {at_least} vectors after {timeout} s\nstdout:\n{out}\nstderr:\n{err}")


def flock_holders(path: Path) -> set[int] | None:
    """PIDs holding a ``flock`` on ``path``, from Linux's ``/proc/locks`` (None where unavailable)."""
    try:
        inode = os.stat(path).st_ino
        table = Path("/proc/locks").read_text()
    except OSError:
        return None
    holders: set[int] = set()
    for line in table.splitlines():
        # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:5678 0 EOF"; a waiter has "->" before FLOCK
        parts = line.split()
        if "FLOCK" not in parts:
            continue
        i = parts.index("FLOCK")
        if parts[i - 1] == "->" or len(parts) < i + 5:
            continue
        try:
            pid, file_inode = int(parts[i + 3]), int(parts[i + 4].rsplit(":", 1)[1])
        except (ValueError, IndexError):
            continue
        if file_inode == inode:
            holders.add(pid)
    return holders


def wait_for_lock(proc: subprocess.Popen, lock_file: Path, catalog_db: Path, timeout: float = 300) -> None:
    """Wait until ``proc`` holds the project's indexing lock.

    Seen in ``/proc/locks`` where there is one; otherwise inferred from the first committed vector
    (vectors are only written while the lock is held)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        holders = flock_holders(lock_file) if Path(lock_file).exists() else set()
        if holders is not None and proc.pid in holders:
            return
        if (committed_vectors(catalog_db) or 0) >= 1:
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(
                f"{proc.args} ended (exit {proc.returncode}) before taking the lock\nstdout:\n{out}\nstderr:\n{err}"
            )
        time.sleep(0.02)
    proc.kill()
    out, err = proc.communicate()
    raise AssertionError(f"the lock was not taken in {timeout} s\nstdout:\n{out}\nstderr:\n{err}")
