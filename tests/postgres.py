"""A throwaway PostgreSQL server on loopback for tests and benchmarks (Debian's `postgresql`
package; `make install` installs it). Each caller gets its own empty database."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: run `make install` (apt postgresql)")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a fresh cluster (trust auth, loopback only, fsync off); yields its admin URL
    `postgresql+psycopg://postgres@127.0.0.1:PORT/postgres`; stops and removes it after."""
    bindir, port = _bindir(), _free_port()
    root = Path(tempfile.mkdtemp(prefix="pg-"))
    data = root / "data"
    # initdb refuses to run as root: run the server as Debian's `postgres` user then
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    if as_root:
        root.chmod(0o755)
        shutil.chown(root, "postgres", "postgres")
    run = {"check": True, "capture_output": True}
    subprocess.run(
        [*prefix, bindir / "initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-sync"],
        **run,
    )
    options = (
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
    )
    log = root / "server.log"
    subprocess.run(
        [*prefix, bindir / "pg_ctl", "-D", data, "-o", options, "-l", log, "-w", "start"], **run
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*prefix, bindir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


def new_database(admin_url: str) -> str:
    """Create an empty database on the server; returns its SQLAlchemy URL."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    dsn = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + f"/{name}"
