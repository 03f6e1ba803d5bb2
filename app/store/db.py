"""Database engine (SQLite with WAL and a busy timeout by default, PostgreSQL or any SQLAlchemy
URL otherwise) and its schema, kept current by Alembic migrations at start-up."""

from __future__ import annotations

import fcntl
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
FIRST_RELEASE = "0001"


def make_engine(db_url: str) -> Engine:
    url = make_url(db_url)
    if url.get_backend_name() != "sqlite":
        # one connection per request thread (AnyIO's pool has 40) plus workers and webhooks
        return create_engine(
            url, pool_pre_ping=True, pool_size=20, max_overflow=40, pool_timeout=60
        )
    if url.database and url.database != ":memory:":
        Path(url.database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        # WAL lets pollers read while a worker writes; writers wait up to 30 s instead of
        # failing with "database is locked".
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def migrate(engine: Engine) -> None:
    """Bring the database to the newest schema. A database the first release created (tables,
    no Alembic version) is stamped as that release, then upgraded."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with ExitStack() as stack:  # several processes (API, workers) may start at once
        database = engine.url.database
        if engine.dialect.name == "sqlite" and database and database != ":memory:":
            lock = stack.enter_context(open(f"{database}.migrate-lock", "a"))
            fcntl.flock(lock, fcntl.LOCK_EX)
        conn = stack.enter_context(engine.begin())
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(461803)")
        config.attributes["connection"] = conn
        tables = inspect(conn).get_table_names()
        if "tasks" in tables and "alembic_version" not in tables:
            command.stamp(config, FIRST_RELEASE)
        command.upgrade(config, "head")
