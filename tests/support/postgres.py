"""A real PostgreSQL server for the tests: Debian's `postgresql` binaries, a throwaway cluster in a temp dir,
listening on a free 127.0.0.1 port only (no Unix socket), run by an unprivileged user.

PostgreSQL refuses to run as root; under root (CI, containers) the cluster belongs to `nobody`. When the
binaries are missing, root installs Debian's `postgresql` package as .ci/run does; anyone else is told to.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from exitd.regtest.node import free_port

SUPERUSER = "exitd"
PACKAGE = "postgresql"


class PostgresUnavailable(Exception):
    pass


def find_bin_dir() -> Path:
    """The newest /usr/lib/postgresql/<major>/bin holding initdb; installs the package when root may."""
    for attempt in range(2):
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
        if found:
            return Path(found[-1]).parent
        if attempt or os.geteuid() != 0 or shutil.which("apt-get") is None:
            break
        install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", PACKAGE]
        if subprocess.run(install, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, check=True)
            subprocess.run(install, capture_output=True, check=True)
    raise PostgresUnavailable(f"PostgreSQL is not installed: apt-get install {PACKAGE}")


class PostgresServer:
    """One cluster; `new_database()` gives each test an empty database of its own."""

    def __init__(self) -> None:
        self.bin = find_bin_dir()
        self.port = free_port()
        self.user = pwd.getpwnam("nobody") if os.geteuid() == 0 else None
        self.root = Path(tempfile.mkdtemp(prefix="exitd-postgres-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.databases = 0

    def _as_owner(self) -> dict[str, object]:
        return {"user": self.user.pw_uid, "group": self.user.pw_gid} if self.user else {}

    def start(self) -> None:
        if self.user:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        subprocess.run(
            [str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8"],
            check=True,
            capture_output=True,
            cwd=self.root,
            **self._as_owner(),  # type: ignore[arg-type]
        )
        with self.log.open("wb") as log:
            if self.user:
                os.chown(self.log, self.user.pw_uid, self.user.pw_gid)
            self.proc = subprocess.Popen(
                [
                    str(self.bin / "postgres"),
                    "-D",
                    str(self.data),
                    "-p",
                    str(self.port),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "unix_socket_directories=",
                    # A throwaway cluster: durability is not what the tests measure.
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                **self._as_owner(),  # type: ignore[arg-type]
            )
        deadline = time.monotonic() + 60
        while True:
            answer = self._psql("SELECT 1")
            if answer.returncode == 0:
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = self.log.read_text()
                self.stop()  # which removes the log
                raise PostgresUnavailable(f"PostgreSQL did not start: {answer.stderr}; {log}")
            time.sleep(0.1)

    def _psql(self, sql: str) -> subprocess.CompletedProcess[str]:
        """One statement through psql (no event loop: fixtures and benchmarks call this from inside one)."""
        command = [str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER]
        return subprocess.run([*command, "-d", "postgres", "-c", sql], capture_output=True, text=True)

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """The URL of a new, empty database."""
        self.databases += 1
        name = f"exitd_test_{self.databases}"
        created = self._psql(f"CREATE DATABASE {name}")
        assert created.returncode == 0, created.stderr
        return self.url(name)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(2)  # SIGINT: PostgreSQL's fast shutdown
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)
