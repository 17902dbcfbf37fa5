import os

import pytest
from hypothesis import settings

from hubbub import logs

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Property tests (tests/unit/properties): a laptop run draws new cases each time and
# replays the failures it saved in .hypothesis/; CI draws the same cases every run, so a
# CI result belongs to its commit and a failure there replays from the commit alone.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if IN_CI:
    settings.load_profile("ci")

# Throwaway PostgreSQL and Redis (postgres_dsn, redis_url, ...): tests/support/services.py.
pytest_plugins = ("tests.support.services",)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: long-running tests (still run in CI)")


@pytest.fixture(autouse=True)
def _fresh_log_throttle(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with nothing held back by the log throttle (hubbub.logs.failures):
    a test that expects a failure's log line must not lose it to an earlier test's."""
    monkeypatch.setattr(logs, "failures", logs.Throttle())
