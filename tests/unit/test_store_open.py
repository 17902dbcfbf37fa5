"""`open_store` picks the backend by URL; PostgreSQL's driver is an optional extra."""

import sys

import pytest

import hubbub.store
from hubbub.errors import ConfigError
from hubbub.store import open_store


def test_a_postgres_url_without_asyncpg_says_which_extra_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)  # what a missing package looks like
    monkeypatch.delitem(sys.modules, "hubbub.store.postgres", raising=False)
    monkeypatch.delattr(hubbub.store, "postgres", raising=False)
    for url in ("postgresql://db.example/hubbub", "postgres://db.example/hubbub"):
        with pytest.raises(ConfigError, match=r"pip install hubbub\[postgres\]"):
            open_store(url)


def test_an_unknown_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown store URL"):
        open_store("mysql://db.example/hubbub")
