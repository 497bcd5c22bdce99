"""A throw-away PostgreSQL cluster for the tests: Debian's ``postgresql`` binaries, a private data dir,
a private unix-socket dir, loopback TCP on a free port, password (SCRAM) authentication, removed after.

``make system-deps`` installs the package. PostgreSQL refuses to run as root, so as root the cluster
runs as the ``postgres`` account the package creates (``runuser``); as anyone else it runs as that user.
"""

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from navembed_pipeline.stack import free_port

SUPERUSER = "navembed"
DATABASE = "dagster"
START_TIMEOUT_S = 60


def postgres_bin() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin``; its absence fails the test (never skipped)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    if not found:
        pytest.fail("PostgreSQL is not installed: the Postgres tests need Debian's postgresql package. "
                    "Run `make system-deps` (apt-get install postgresql).")
    return Path(found[-1]).parent


@dataclass(frozen=True)
class PostgresCluster:
    """A running cluster; ``url`` is the SQLAlchemy URL Dagster's ``postgres_url`` takes."""

    root: Path
    port: int
    password: str

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{DATABASE}"

    def psql(self, sql: str) -> str:
        """Run ``sql`` with psql against the cluster's database; its output (tuples only)."""
        done = subprocess.run([str(postgres_bin() / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
                               SUPERUSER, "-d", DATABASE, "-At", "-c", sql], capture_output=True, text=True,
                              env={**os.environ, "PGPASSWORD": self.password}, timeout=30, check=True)
        return done.stdout.strip()


def _as_owner(command: list[str], owner: str | None) -> list[str]:
    return ["runuser", "-u", owner, "--", *command] if owner else command


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A fresh cluster with database ``dagster``, stopped and deleted after the session."""
    binaries = postgres_bin()
    owner = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="navembed-pg-"))
    data, sockets = root / "data", root / "sockets"
    password = secrets.token_hex(16)
    (root / "pw").write_text(password)
    sockets.mkdir(mode=0o700)
    if owner:
        account = pwd.getpwnam(owner)
        for path in (root, sockets, root / "pw"):
            os.chown(path, account.pw_uid, account.pw_gid)
    os.chmod(root / "pw", 0o600)
    port = free_port()
    try:
        _start(binaries, owner, root, port, password)
        yield PostgresCluster(root, port, password)
    finally:
        if (root / "data" / "postmaster.pid").exists():
            subprocess.run(_as_owner([str(binaries / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate",
                                      "-w", "stop"], owner), capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def _start(binaries: Path, owner: str | None, root: Path, port: int, password: str) -> None:
    """initdb, start on loopback + the private socket dir, create the database; a failure fails the test."""
    data, log = root / "data", root / "server.log"
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root / 'sockets'} -c fsync=off -c max_connections=200"
    steps = [
        _as_owner([str(binaries / "initdb"), "-D", str(data), "-U", SUPERUSER, "--pwfile", str(root / "pw"),
                   "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"], owner),
        _as_owner([str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "-t",
                   str(START_TIMEOUT_S), "start"], owner),
        [str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", SUPERUSER, DATABASE],
    ]
    for command in steps:
        done = subprocess.run(command, capture_output=True, text=True, timeout=START_TIMEOUT_S + 60,
                              env={**os.environ, "PGPASSWORD": password})
        if done.returncode != 0:
            server_log = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            pytest.fail(f"the test PostgreSQL cluster did not start: {' '.join(command[:4])} exited "
                        f"{done.returncode}: {done.stderr[-2000:]}\n{server_log}")
