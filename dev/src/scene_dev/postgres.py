"""A throwaway PostgreSQL server for tests and benches: Debian's package (installed by
``scripts/ensure_postgres.sh``, which ``make test`` runs), a cluster made by ``initdb`` in a
temporary directory, started by ``pg_ctl`` on a free port and removed when it stops.

PostgreSQL refuses to run as root; as root (CI, containers) the server's commands run as the
``postgres`` user the Debian package creates, over a directory handed to it.

    with TempPostgres() as server:
        url = server.create_database("t1")      # postgresql://postgres@127.0.0.1:PORT/t1
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from scene_dev.run_plan import free_ports

# Durability is not what a test server is for: no fsync makes each test's schema and commits
# cheap (a crash of the test machine loses a database that is thrown away anyway).
_FAST = ("-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
         "-c max_connections=200")


def bin_dir() -> Path | None:
    """Where Debian's package puts initdb and pg_ctl (the newest version), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresUnavailable(RuntimeError):
    pass


class TempPostgres:
    def __init__(self) -> None:
        self.bin = bin_dir()
        if self.bin is None:
            raise PostgresUnavailable("PostgreSQL is not installed (scripts/ensure_postgres.sh "
                                      "installs Debian's package)")
        self.dir: Path | None = None
        self.port = 0
        self._user: list[str] = []

    def __enter__(self) -> TempPostgres:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self, *argv: str) -> str:
        result = subprocess.run([*self._user, *argv], capture_output=True, text=True,
                                cwd=self.dir, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}):\n"
                               f"{result.stdout}{result.stderr}")
        return result.stdout

    def start(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="scene-postgres-"))
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
            self._user = ["runuser", "-u", "postgres", "--"]
        data = self.dir / "data"
        self._run(str(self.bin / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--no-sync", "--no-instructions")
        (self.port,) = free_ports(1)
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 {_FAST}")
        self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-l", str(self.dir / "server.log"),
                  "-o", options, "-w", "-t", "60", "start")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new, empty database; its URL."""
        psql = self.bin / "psql" if (self.bin / "psql").exists() else Path("psql")
        self._run(str(psql), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-q",
                  "-c", f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.dir is None:
            return
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate",
                      "-w", "stop")
        except RuntimeError:
            pass  # never started, or gone already
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None
