"""Persistence behind one contract (`Store`), chosen by URL."""

from hubbub.errors import ConfigError
from hubbub.store.base import Store


def open_store(url: str, *, synchronous: str = "FULL") -> Store:
    """`sqlite:///REL`, `sqlite:////ABS`, `sqlite://:memory:` (URLs as in SQLAlchemy)."""
    if url.startswith("sqlite://"):
        from hubbub.store.sqlite import SqliteStore

        rest = url[len("sqlite://"):]
        if rest in (":memory:", "/:memory:"):
            return SqliteStore(":memory:", synchronous=synchronous)
        if not rest.startswith("/") or rest == "/":
            raise ConfigError(f"bad store URL {url!r}: use sqlite:///relative/path, "
                              "sqlite:////absolute/path or sqlite://:memory:")
        return SqliteStore(rest[1:], synchronous=synchronous)
    if url.startswith(("postgresql://", "postgres://")):
        raise ConfigError("the PostgreSQL store is not available in this version yet")
    raise ConfigError(f"unknown store URL {url!r}")


__all__ = ["Store", "open_store"]
