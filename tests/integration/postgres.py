"""A real PostgreSQL server for tests: EXPBOT_TEST_POSTGRES_URL, or a throwaway one started here.

Fixtures: `postgres_server` (session: the admin URL) and `postgres_url` (a fresh, empty
database per test, dropped afterwards). Without PostgreSQL binaries the tests are skipped,
except under CI (env CI set), where they fail: CI must run them.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

ENV_URL = "EXPBOT_TEST_POSTGRES_URL"
SERVER_USER = "postgres"  # Debian's postgresql package creates this system user


def find_binaries() -> Path | None:
    """The directory holding initdb and pg_ctl: from PATH, else the newest Debian install."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).resolve().parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
    )
    for directory in reversed(candidates):
        if (Path(directory) / "initdb").exists() and (Path(directory) / "pg_ctl").exists():
            return Path(directory)
    return None


def _unavailable(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set: PostgreSQL tests must run there, not be skipped)")
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThrowawayServer:
    """initdb + pg_ctl in a temporary directory; trust auth on 127.0.0.1 only."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        # Not pytest's tmp_path: its parents are mode 0700 for root, so the postgres user
        # could not reach the data directory.
        self.root = Path(tempfile.mkdtemp(prefix="expbot-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = _free_port()
        self.as_other_user = os.geteuid() == 0  # initdb and postgres refuse to run as root
        if self.as_other_user:
            try:
                user = pwd.getpwnam(SERVER_USER)
            except KeyError:
                shutil.rmtree(self.root, ignore_errors=True)
                _unavailable(f"running as root and there is no {SERVER_USER!r} user to run PostgreSQL")
            os.chown(self.root, user.pw_uid, user.pw_gid)

    def _run(self, *args: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.as_other_user:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n{log}"
            )

    def start(self) -> str:
        """initdb and start the server; returns its admin URL."""
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--encoding=UTF8", "--no-locale", "--no-sync")
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.root} "
            # A test server: durability is not wanted, speed is.
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        """Stop the server and delete its files."""
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """Admin URL of a PostgreSQL server that lives for the whole test session."""
    external = os.environ.get(ENV_URL)
    if external:
        yield external
        return
    bindir = find_binaries()
    if bindir is None:
        _unavailable("PostgreSQL binaries (initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql")
    server = ThrowawayServer(bindir)  # type: ignore[arg-type]
    try:
        url = server.start()
    except Exception:
        server.stop()
        raise
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """URL of a fresh, empty database for one test (so tests never see each other's rows)."""
    name = f"expbot_test_{uuid.uuid4().hex[:12]}"
    admin_url = make_url(postgres_server).set(drivername="postgresql+psycopg")
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield admin_url.set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            # FORCE: a test that failed may have left connections open.
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()
