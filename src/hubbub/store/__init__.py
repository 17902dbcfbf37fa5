"""Persistence behind one contract (`Store`), chosen by URL."""

from types import ModuleType

from hubbub.errors import ConfigError
from hubbub.store.base import Store

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def postgres_module() -> ModuleType:
    """`hubbub.store.postgres`, imported only when a PostgreSQL URL is used: asyncpg is an
    optional dependency (`pip install hubbub[postgres]`)."""
    try:
        from hubbub.store import postgres
    except ImportError as exc:
        if (exc.name or "").split(".")[0] != "asyncpg":
            raise
        raise ConfigError("the postgresql store needs `pip install hubbub[postgres]`") from None
    return postgres


def sqlite_path(url: str) -> str | None:
    """The database of a `sqlite://` URL: a file path, or `:memory:`. None for a URL of
    another scheme; a ConfigError for a malformed one."""
    if not url.startswith("sqlite://"):
        return None
    rest = url[len("sqlite://"):]
    if rest in (":memory:", "/:memory:"):
        return ":memory:"
    if not rest.startswith("/") or rest == "/":
        raise ConfigError(f"bad store URL {url!r}: use sqlite:///relative/path, "
                          "sqlite:////absolute/path or sqlite://:memory:")
    return rest[1:]


def open_store(url: str, *, synchronous: str = "FULL") -> Store:
    """`sqlite:///REL`, `sqlite:////ABS`, `sqlite://:memory:` (URLs as in SQLAlchemy), or
    `postgresql://USER:PASSWORD@HOST:PORT/DB` (also `postgres://`; asyncpg's URL options
    such as `?sslmode=require` apply). `synchronous` is SQLite's; PostgreSQL commits with
    its own `synchronous_commit`."""
    path = sqlite_path(url)
    if path is not None:
        from hubbub.store.sqlite import SqliteStore

        return SqliteStore(path, synchronous=synchronous)
    if url.startswith(POSTGRES_SCHEMES):
        store: Store = postgres_module().PostgresStore(url)
        return store
    raise ConfigError(f"unknown store URL {url!r}")


__all__ = ["POSTGRES_SCHEMES", "Store", "open_store", "postgres_module", "sqlite_path"]
