"""A throwaway PostgreSQL server for the tests: ``initdb`` into a temporary folder, ``pg_ctl start`` listening
only on a Unix socket in that folder (no TCP port), one fresh database per test, ``pg_ctl stop`` at the end.

As root (PostgreSQL refuses to run as root) the server runs as the ``postgres`` OS user that Debian's
``postgresql`` package creates. Where no server binaries can be found, the tests that need one are skipped
with the reason.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator

import pytest

PG_USER = "adaptlr"


def pg_bindir() -> str | None:
    """The folder of ``initdb`` / ``pg_ctl``: on PATH, ``pg_config --bindir``, or Debian's
    ``/usr/lib/postgresql/<version>/bin`` (newest first)."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return os.path.dirname(os.path.realpath(found))
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        d = out.stdout.strip()
        if out.returncode == 0 and os.path.exists(os.path.join(d, "initdb")):
            return d
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True):
        if os.path.exists(os.path.join(d, "initdb")) and os.path.exists(os.path.join(d, "pg_ctl")):
            return d
    return None


class Server:
    """A running cluster; :meth:`database` creates a database and returns its SQLAlchemy URL."""

    def __init__(self, bindir: str) -> None:
        self.bindir = bindir
        self.dir = tempfile.mkdtemp(prefix="adaptlr-pg-")  # short: a socket path has ~100 characters
        self.data = os.path.join(self.dir, "data")
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root and there is no 'postgres' OS user to run the server") from None
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            runuser = shutil.which("runuser")
            self.as_user = [runuser, "-u", "postgres", "--"] if runuser else ["su", "postgres", "-c"]
        self._run("initdb", "-D", self.data, "-U", PG_USER, "--auth=trust", "-E", "UTF8", "--no-sync")
        self._run(
            "pg_ctl",
            "-D",
            self.data,
            "-l",
            os.path.join(self.dir, "log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-k {self.dir} -c listen_addresses='' -c fsync=off -c max_connections=60",
            "start",
        )

    def _run(self, tool: str, *args: str) -> None:
        cmd = [os.path.join(self.bindir, tool), *args]
        if self.as_user and self.as_user[0] == "su":
            import shlex

            cmd = [*self.as_user, shlex.join(cmd)]
        else:
            cmd = [*self.as_user, *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            log = ""
            logfile = os.path.join(self.dir, "log")
            if os.path.exists(logfile):
                log = open(logfile).read()[-2000:]
            raise RuntimeError(f"{tool} failed ({out.returncode}): {out.stderr.strip()[-2000:]} {log}")

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://{PG_USER}@/{db}?host={self.dir}"

    def database(self) -> str:
        import sqlalchemy as sa

        name = "t_" + uuid.uuid4().hex[:12]
        engine = sa.create_engine(self.url().replace("postgresql://", "postgresql+psycopg://"))
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql(f"CREATE DATABASE {name}")
        engine.dispose()
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    """One PostgreSQL cluster per test session (per xdist worker), or a skip saying why there is none."""
    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install 'adaptlr[store]'")
    bindir = pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql")
    try:
        server = Server(bindir)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"could not start a throwaway PostgreSQL server: {e}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: Server) -> str:
    """A fresh, empty database on the session's server: ``postgresql://adaptlr@/t_...?host=/tmp/...``."""
    return pg_server.database()
