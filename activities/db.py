"""Database engine: SQLite (embedded default) or PostgreSQL, same code."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, event
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, create_engine
from sqlmodel.sql.expression import SelectOfScalar

__all__ = ["get_or_create", "make_engine", "migrate", "session_for"]

T = TypeVar("T")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Build an engine. On SQLite every transaction is ``BEGIN IMMEDIATE`` (one writer at a
    time, no lock-upgrade deadlocks) in WAL mode, so concurrent activities serialise cleanly;
    on PostgreSQL row locks do the same job."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False},
                               **kwargs)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # let us emit BEGIN ourselves
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, **kwargs)


def migrate(url: str) -> None:
    """Run the Alembic migrations up to head on ``url``."""
    from alembic import command
    from alembic.config import Config

    root = Path(__file__).resolve().parent.parent
    config = Config(str(root / "alembic.ini"))
    config.set_main_option("script_location", str(root / "migrations"))
    config.attributes["database_url"] = url
    command.upgrade(config, "head")


def session_for(engine: Engine) -> Session:
    """A session whose objects stay readable after commit (no reload, no second BEGIN)."""
    return Session(engine, expire_on_commit=False)


def get_or_create(session: Session, query: SelectOfScalar[T],
                   make: Callable[[], T]) -> tuple[T, bool]:
    """The row ``query`` finds, or a new one from ``make``; ``(row, created)``.

    A concurrent transaction that inserts the same unique key first makes our insert fail;
    the savepoint keeps our transaction usable and we read the winner's row instead.
    """
    found = session.exec(query).first()
    if found is not None:
        return found, False
    row = make()
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return session.exec(query).one(), False
    return row, True
