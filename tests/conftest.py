import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Throwaway PostgreSQL and Redis (postgres_dsn, redis_url, ...): tests/support/services.py.
pytest_plugins = ("tests.support.services",)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: long-running tests (still run in CI)")
