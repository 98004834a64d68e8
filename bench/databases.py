"""A fresh, migrated database for every session, on SQLite or PostgreSQL.

Each (database, app set) is migrated once per run into a template; a session
gets a copy (a file copy on SQLite, ``CREATE DATABASE ... TEMPLATE`` on
PostgreSQL, both well under a second), so no session sees another's rows and
none waits for migrations. PostgreSQL databases are named
``bench_<pid>_<n>``; the run drops every one it created, templates included.
"""

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

# Runs ``manage.py migrate`` for the given scenario template against a URL.
Migrate = Callable[[str, str], None]


def database_url(server_url: str, name: str) -> str:
    """``server_url`` (any database on the server) pointed at the database ``name``."""
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


@dataclass
class Database:
    url: str
    drop: Callable[[], None]


class Databases:
    """The run's templates and the sessions' copies."""

    def __init__(self, directory: Path, postgres_url: str, migrate: Migrate) -> None:
        self.directory = directory
        self.postgres_url = postgres_url
        self.migrate = migrate
        self._templates: dict[tuple[str, str], str] = {}  # (database, template) -> path or name
        self._count = 0

    def fresh(self, database: str, template: str) -> Database:
        """A migrated database of kind ``database`` with the apps of ``template``."""
        self._count += 1
        if database == "sqlite":
            return self._sqlite(template, f"session-{self._count}")
        return self._postgres(template, f"bench_{os.getpid()}_{self._count}")

    def close(self) -> None:
        """Remove the templates (the sessions' copies are gone with their sessions)."""
        for (database, _), where in self._templates.items():
            if database == "sqlite":
                _remove_sqlite(Path(where))
            else:
                self._drop_postgres(where)
        self._templates.clear()

    def _sqlite(self, template: str, name: str) -> Database:
        source = self._templates.get(("sqlite", template))
        if source is None:
            path = self.directory / f"template-{template}.sqlite3"
            _remove_sqlite(path)  # An interrupted run's file, -wal or -shm.
            self.migrate(template, f"sqlite:///{path}")
            source = self._templates[("sqlite", template)] = str(path)
        copy = self.directory / f"{name}.sqlite3"
        _remove_sqlite(copy)
        shutil.copyfile(source, copy)
        return Database(f"sqlite:///{copy}", lambda: _remove_sqlite(copy))

    def _postgres(self, template: str, name: str) -> Database:
        source = self._templates.get(("postgres", template))
        if source is None:
            source = f"bench_{os.getpid()}_template_{template.replace('-', '_')}"
            self._drop_postgres(source)
            self._admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(source)))
            self._templates[("postgres", template)] = source
            self.migrate(template, database_url(self.postgres_url, source))
        self._drop_postgres(name)
        create = sql.SQL("CREATE DATABASE {} TEMPLATE {}")
        self._admin(create.format(sql.Identifier(name), sql.Identifier(source)))
        return Database(database_url(self.postgres_url, name), lambda: self._drop_postgres(name))

    def _drop_postgres(self, name: str) -> None:
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        self._admin(drop.format(sql.Identifier(name)))

    def _admin(self, statement: sql.Composed) -> None:
        with psycopg.connect(self.postgres_url, autocommit=True, connect_timeout=10) as admin:
            admin.execute(statement)


def _remove_sqlite(path: Path) -> None:
    for file in path.parent.glob(path.name + "*"):
        file.unlink()
